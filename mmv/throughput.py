"""Throughput accounting: examples/s, step time, time spent waiting for input, and MFU.

Model FLOPs come from XLA's cost analysis of the lowered (not yet partitioned) train step, which
counts the whole global batch. It is taken of the plain step (dense loss, no accumulation):
XLA counts a loop body once whatever its trip count, so the ring loss and gradient accumulation,
both loops, would be undercounted, and their recomputation is not model work anyway.
MFU = model FLOPs per second / (peak FLOP/s per device × devices), with the dense bf16 peak of
the device: a float32 model cannot reach 100%.
"""

import contextlib
import time

# Dense bf16 peak FLOP/s per chip (vendor figures). The first substring of
# `device.device_kind` that matches wins, so 'TPU v5 lite' (v5e) precedes 'TPU v5' (v5p).
PEAK_FLOPS = (
    ('TPU v4', 275e12),
    ('TPU v5 lite', 197e12),
    ('TPU v5e', 197e12),
    ('TPU v5p', 459e12),
    ('TPU v5', 459e12),
    ('A100', 312e12),
    ('H100 PCIe', 756e12),
    ('H100', 989e12),
    ('H200', 989e12),
)


def peak_flops(device_kind):
  """The peak FLOP/s of one device of this kind, or None where unknown (CPUs)."""
  for name, flops in PEAK_FLOPS:
    if name in device_kind:
      return flops
  return None


def model_flops(lowered):
  """Global FLOPs of a lowered (jitted) computation from XLA's cost analysis; None if absent."""
  cost = lowered.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = (cost or {}).get('flops')
  return float(flops) if flops else None


class StepTimer:
  """Accumulates wall time and input waiting between reports.

  The train loop keeps at most one step in flight (it waits for step s−1 after dispatching
  step s, and for step s itself at log and checkpoint steps), so time blocked on the input
  iterator is time the device had nothing queued.
  """

  def __init__(self, *, examples_per_step, flops_per_step=None, peak_flops_total=None):
    self.examples_per_step = examples_per_step
    self.flops_per_step = flops_per_step
    self.peak_flops_total = peak_flops_total
    self._start, self._steps, self._waiting = time.perf_counter(), 0, 0.0

  @contextlib.contextmanager
  def waiting_for_input(self):
    start = time.perf_counter()
    try:
      yield
    finally:
      self._waiting += time.perf_counter() - start

  @contextlib.contextmanager
  def paused(self):
    """Time (e.g. a checkpoint save) that belongs to no step: left out of the interval."""
    start = time.perf_counter()
    try:
      yield
    finally:
      self._start += time.perf_counter() - start

  def step_done(self):
    self._steps += 1

  def report(self):
    """Metrics of the steps since the last report; starts the next interval."""
    now = time.perf_counter()
    elapsed, steps = now - self._start, self._steps
    metrics = {}
    if steps and elapsed > 0:
      metrics = {
          'step_time_sec': elapsed / steps,
          'steps_per_sec': steps / elapsed,
          'examples_per_sec': self.examples_per_step * steps / elapsed,
          'input_wait_fraction': min(self._waiting / elapsed, 1.0),
      }
      if self.flops_per_step:
        metrics['tflops_per_sec'] = self.flops_per_step * steps / elapsed / 1e12
        if self.peak_flops_total:
          metrics['mfu'] = self.flops_per_step * steps / elapsed / self.peak_flops_total
    self._start, self._steps, self._waiting = now, 0, 0.0
    return metrics
