"""GDT as a method: configs/gdt.py, training (in process), one device = eight, exact resume."""

import functools

import chex
import jax
import numpy as np
import pytest

from configs import gdt as gdt_config
from mmv import benchmarks
from mmv import evaluate_split
from mmv import methods
from mmv import sharding
from mmv import train
from tests import launching
from tests import preempt_in_process

# Launches processes, converts media or trains: not in `make test-fast`.
pytestmark = pytest.mark.slow


def _small(data_dir, hypothesis):
  c = gdt_config.get_config('runlocal')
  c.data.data_dir = data_dir
  c.data.shuffle_buffer = 16
  c.model.width = 8
  c.gdt.head_hidden, c.gdt.head_dim, c.gdt.warmup_steps = 16, 8, 2
  c.gdt.hypothesis = hypothesis
  c.train.batch_size = 16
  c.train.log_every = 1
  return c


def test_paper_settings_and_checks():
  c = gdt_config.get_config()
  assert c.method == 'gdt' and methods.get(c).__name__ == 'mmv.methods.gdt'
  assert (c.model.video_backbone, c.model.audio_backbone) == ('r2plus1d_18', 'audio_resnet9')
  assert (c.data.num_frames, c.data.fps, c.data.crop_size) == (30, 30.0, 112)
  assert (c.data.audio_sample_rate, c.data.stft_window, c.data.stft_hop,
          c.data.num_mel_bins) == (24000.0, 480, 240, 40)
  g = c.gdt
  assert (g.hypothesis, g.temperature, g.head_hidden, g.head_dim) == (1, 0.07, 512, 256)
  assert (g.learning_rate, g.warmup_multiplier, g.momentum, g.weight_decay) == (
      0.01, 16.0, 0.9, 1e-5)
  assert c.train.batch_size == 128
  assert c.data.views == (('shifted', 30, 1, 112, 'independent', True),)
  # No text tower: the evaluation runs the linear probe, not retrieval or zero-shot.
  assert evaluate_split.served_protocols(c, benchmarks.get('synthetic')) == ('linear',)
  method = methods.get(c)
  method.check_config(c)
  c.gdt.hypothesis = 10
  with pytest.raises(ValueError, match='gdt.hypothesis=10'):
    method.check_config(c)
  c.gdt.hypothesis = 1
  c.gdt.head_dropout = 0.3
  with pytest.raises(ValueError, match='dropout'):
    method.check_config(c)
  c.gdt.head_dropout = 0.0
  c.gdt.hypothesis = 8  # Time shift: needs the shifted view, placed independently with audio.
  method.check_config(c)
  c.data.views = (('shifted', 30, 1, 112, 'within', True),)
  with pytest.raises(ValueError, match="placed 'independent'"):
    method.check_config(c)
  c.data.views = ()
  with pytest.raises(ValueError, match='add a data.views entry'):
    method.check_config(c)
  with pytest.raises(ValueError, match="unknown config argument 'runlokal'"):
    gdt_config.get_config('runlokal')


def test_schedule_and_optimizer_are_gdts():
  """0.01 → 0.16 linearly over the warmup, then constant; SGD: v ← 0.9 v + g + wd θ."""
  c = gdt_config.get_config()
  method = methods.get(c)
  schedule = method.learning_rate_schedule(c)
  np.testing.assert_allclose([schedule(0), schedule(9000), schedule(18_000), schedule(300_000)],
                             [0.01, 0.085, 0.16, 0.16], rtol=1e-6)
  tx = method.make_optimizer(c)
  theta, g = np.array([1.0, -2.0], np.float32), np.array([0.5, 0.25], np.float32)
  state = tx.init(theta)
  velocity = np.zeros(2)
  for step in range(3):
    updates, state = tx.update(g, state, theta)
    velocity = 0.9 * velocity + g + 1e-5 * theta
    np.testing.assert_allclose(updates, -schedule(step) * velocity, rtol=1e-5)


def test_runlocal_trains_resumes_exactly_and_devices_do_not_change_the_loss(
    data_dir, tmp_path, monkeypatch, capsys):
  """Hypothesis 8 (all four views: clip, reversed, shifted, shifted reversed) trains with finite
  losses on 8 devices; SIGTERM during step 2 → its checkpoint → resume gives the uninterrupted
  run's losses and state exactly; one device gives the same losses (global batch: BN and
  negatives).

  In process: the signal comes from the step itself (tests/preempt_in_process.py); the
  processes' side (a signal from outside, the exit status, launch.py resuming) is
  tests/test_preemption.py's, whatever the method."""
  steps = 4
  config = _small(data_dir, 8)
  config.train.steps, config.train.checkpoint_every = steps, 3
  full, stopped, one = (str(tmp_path / n) for n in ('full', 'stopped', 'one'))
  preempt_in_process.compile_once(monkeypatch)
  uninterrupted = train.train(config, full)
  losses = [float(m['loss']) for _, m in uninterrupted['history']]
  assert len(losses) == steps and np.all(np.isfinite(losses)), losses
  capsys.readouterr()
  preempt_in_process.sigterm_during_step(monkeypatch, 2)
  summary = train.train(config, stopped)
  assert summary['preempted'] == 'SIGTERM' and summary['step'] == 2  # Not a checkpoint step.
  assert 'preempted: saved the checkpoint of step 2' in capsys.readouterr().out
  summary = train.train(config, stopped)
  assert 'resumed from step 2' in capsys.readouterr().out
  assert [s for s, _ in summary['history']] == [3, 4] and not summary['preempted']
  expected, got = launching.logged_losses(full), launching.logged_losses(stopped)
  assert sorted(got) == list(range(1, steps + 1))
  for step in range(1, steps + 1):
    assert got[step] == expected[step] * len(got[step]), step
  # The whole state (parameters, SGD momentum, BatchNorm statistics, step), bit for bit.
  chex.assert_trees_all_equal(jax.device_get(summary['state']),
                              jax.device_get(uninterrupted['state']))
  # One device: train.train's mesh over the first device only.
  monkeypatch.setattr(sharding, 'make_mesh',
                      functools.partial(sharding.make_mesh, devices=jax.devices()[:1]))
  config.train.steps = 2
  train.train(config, one)
  single = launching.logged_losses(one)
  assert sorted(single) == [1, 2]
  for step in (1, 2):
    np.testing.assert_allclose(single[step], expected[step], rtol=1e-4)
