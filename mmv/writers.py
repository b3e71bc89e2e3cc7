"""Where training metrics go: metrics.jsonl, TensorBoard event files and the console.

Only process 0 writes; the others get a writer that does nothing but keep the interface.
"""

import json
import os
import time

import jax
import tensorboardX


class MetricWriter:

  def __init__(self, workdir, total_steps, *, enabled=None):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self.total_steps = total_steps
    self._last = None  # (time, step) of the previous log line, for rates.
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a')
      self._tb = tensorboardX.SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def write(self, step, metrics, *, examples_per_step):
    """Logs scalar `metrics` at `step`; adds examples/s and prints a console line."""
    now = time.time()
    metrics = {k: float(v) for k, v in metrics.items()}
    if self._last is not None and step > self._last[1]:
      seconds_per_step = (now - self._last[0]) / (step - self._last[1])
      metrics['examples_per_sec'] = examples_per_step / seconds_per_step
      metrics['steps_per_sec'] = 1.0 / seconds_per_step
      eta = (self.total_steps - step) * seconds_per_step
    else:
      eta = None
    self._last = (now, step)
    if not self.enabled:
      return metrics
    self._jsonl.write(json.dumps({'step': int(step), **metrics}) + '\n')
    self._jsonl.flush()
    for k, v in metrics.items():
      self._tb.add_scalar(k, v, step)
    self._tb.flush()
    terms = ' '.join(f'{k}={v:.4f}' for k, v in metrics.items()
                     if k.startswith('loss_'))
    rate = (f' {metrics["examples_per_sec"]:.1f} ex/s ETA {_duration(eta)}'
            if eta is not None else '')
    print(f'step {step}/{self.total_steps} loss={metrics["loss"]:.4f} {terms}{rate}',
          flush=True)
    return metrics

  def close(self):
    if self.enabled:
      self._jsonl.close()
      self._tb.close()


def _duration(seconds):
  seconds = int(seconds)
  return f'{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'
