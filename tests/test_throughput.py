"""Throughput accounting: the peak table, model FLOPs from XLA, the step timer's arithmetic."""

import jax
import jax.numpy as jnp
import pytest

from mmv import throughput
from mmv import writers


@pytest.mark.parametrize('kind,peak', [
    ('TPU v4', 275e12), ('TPU v5 lite', 197e12), ('TPU v5p', 459e12),
    ('NVIDIA A100-SXM4-80GB', 312e12), ('NVIDIA H100 80GB HBM3', 989e12),
    ('NVIDIA H100 PCIe', 756e12), ('NVIDIA H200', 989e12), ('cpu', None)])
def test_peak_flops_by_device_kind(kind, peak):
  assert throughput.peak_flops(kind) == peak


def test_model_flops_of_a_matmul_count_the_global_batch():
  x = jax.ShapeDtypeStruct((64, 32), jnp.float32)
  w = jax.ShapeDtypeStruct((32, 16), jnp.float32)
  assert throughput.model_flops(jax.jit(jnp.matmul).lower(x, w)) == 2 * 64 * 32 * 16


def test_step_timer_rates_and_input_fraction(monkeypatch):
  clock = iter([0.0,  # Start.
                1.0, 1.5,  # Waiting for input 0.5 s.
                4.0])  # Report after two steps.
  monkeypatch.setattr(throughput.time, 'perf_counter', lambda: next(clock))
  timer = throughput.StepTimer(examples_per_step=8, flops_per_step=1e12,
                               peak_flops_total=2e12)
  with timer.waiting_for_input():
    pass
  timer.step_done()
  timer.step_done()
  metrics = timer.report()
  assert metrics == pytest.approx({'step_time_sec': 2.0, 'steps_per_sec': 0.5,
                                   'examples_per_sec': 4.0, 'input_wait_fraction': 0.125,
                                   'tflops_per_sec': 0.5, 'mfu': 0.25})
  line = writers.console_line(10, 20, {'loss': 1.0, 'loss_va': 0.5, **metrics})
  assert line == ('step 10/20 loss=1.0000 loss_va=0.5000 4.0 ex/s 2.000 s/step input 12% '
                  'MFU 25.0% ETA 0:00:20')
  # Lost data and skipped steps are shown once there are any.
  line = writers.console_line(10, 20, {'loss': 1.0, **metrics, 'data_skipped': 3,
                                       'data_unreadable': 0, 'nonfinite': 1})
  assert line.endswith('ETA 0:00:20 data_skipped=3 nonfinite=1')
