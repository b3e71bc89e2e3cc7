"""Where training metrics go: metrics.jsonl, TensorBoard event files and the console.

Only process 0 writes; the others get a writer that does nothing but keep the interface.
A resumed run repeats the steps after its checkpoint: their records from the stopped run are
dropped (metrics.jsonl) or superseded (TensorBoard), so that each step appears once.
"""

import json
import os

import jax
import tensorboardX


class MetricWriter:

  def __init__(self, workdir, total_steps, *, start_step=0, enabled=None):
    """`start_step`: the step the run starts from (its checkpoint's); later records go."""
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self.total_steps = total_steps
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      path = os.path.join(workdir, 'metrics.jsonl')
      truncate_records(path, start_step)
      self._jsonl = open(path, 'a')
      # TensorBoard drops the earlier files' events from purge_step on when it reads this one.
      self._tb = tensorboardX.SummaryWriter(os.path.join(workdir, 'tensorboard'),
                                            purge_step=start_step + 1)

  def write(self, step, metrics):
    """Logs scalar `metrics` at `step` and prints a console line; returns them as floats."""
    metrics = {k: float(v) for k, v in metrics.items()}
    if not self.enabled:
      return metrics
    self._jsonl.write(json.dumps({'step': int(step), **metrics}) + '\n')
    self._jsonl.flush()
    for k, v in metrics.items():
      self._tb.add_scalar(k, v, step)
    self._tb.flush()
    print(console_line(step, self.total_steps, metrics), flush=True)
    return metrics

  def close(self):
    if self.enabled:
      self._jsonl.close()
      self._tb.close()


def truncate_records(path, last_step):
  """Keeps the records of metrics.jsonl up to `last_step`, rewriting it atomically (a new file
  renamed over it: a crash leaves the old or the new one). A torn last line (a run killed while
  writing it) goes too."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = f.readlines()
  kept = []
  for i, line in enumerate(lines):
    try:
      record = json.loads(line)
    except json.JSONDecodeError:
      if i == len(lines) - 1:
        break
      raise ValueError(f'{path}, line {i + 1}: not a JSON record: {line[:80]!r}') from None
    if record['step'] <= last_step:
      kept.append(line if line.endswith('\n') else line + '\n')
  if len(kept) == len(lines):
    return
  staged = path + '.tmp'
  with open(staged, 'w') as f:
    f.writelines(kept)
  os.replace(staged, path)


def console_line(step, total_steps, metrics):
  """'step 20/600 loss=… loss_va=… loss_vt=… 85.3 ex/s 0.375 s/step input 12% MFU 40.1% ETA …'"""
  terms = ''.join(f' {k}={v:.4f}' for k, v in metrics.items() if k.startswith('loss_'))
  line = f'step {step}/{total_steps} loss={metrics["loss"]:.4f}{terms}'
  if 'examples_per_sec' in metrics:
    line += (f' {metrics["examples_per_sec"]:.1f} ex/s {metrics["step_time_sec"]:.3f} s/step'
             f' input {100 * metrics["input_wait_fraction"]:.0f}%')
    if 'mfu' in metrics:
      line += f' MFU {100 * metrics["mfu"]:.1f}%'
    line += f' ETA {_duration((total_steps - step) * metrics["step_time_sec"])}'
  for key in ('data_skipped', 'data_unreadable', 'nonfinite'):  # Shown once there are any.
    if metrics.get(key):
      line += f' {key}={metrics[key]:.0f}'
  return line


def _duration(seconds):
  seconds = int(seconds)
  return f'{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'
