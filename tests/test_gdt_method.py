"""GDT as a method: configs/gdt.py, training through launch.py, one device = two, exact resume."""

import os
import signal

import chex
import jax
import numpy as np
import pytest

from configs import gdt as gdt_config
from mmv import benchmarks
from mmv import checkpoint as ckpt_lib
from mmv import evaluate_split
from mmv import methods
from mmv import sharding
from mmv import train
from mmv import train_step
from tests import launching

# Launches processes, converts media or trains: not in `make test-fast`.
pytestmark = pytest.mark.slow

# The conftest's small sizes, for the tiny backbones and GDT's heads.
SMALL = ['--config.model.width=8', '--config.gdt.head_hidden=16', '--config.gdt.head_dim=8',
         '--config.train.batch_size=16', '--config.gdt.warmup_steps=2']


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


@pytest.mark.parametrize('hypothesis', [8])
def test_runlocal_trains(data_dir, tmp_path, hypothesis):
  c = _small(data_dir, hypothesis)
  c.train.steps = c.train.checkpoint_every = 2
  result = train.train(c, str(tmp_path))
  losses = [float(m['loss']) for _, m in result['history']]
  assert len(losses) == 2 and np.all(np.isfinite(losses)), losses


def _args(workdir, data_dir, *flags):
  return ['launch.py', '--config', 'configs/gdt.py:runlocal', f'--workdir={workdir}',
          f'--config.data.data_dir={data_dir}', '--config.data.shuffle_buffer=16',
          '--config.train.log_every=1', '--config.gdt.hypothesis=2', *SMALL, *flags]


def _final_params(config, workdir, step):
  mesh = sharding.make_mesh()
  model = train_step.create_model(config)
  abstract = train_step.abstract_train_state(config, model, train_step.create_optimizer(config),
                                             mesh)
  signature = ckpt_lib.variable_signature(
      {'params': abstract.params, 'batch_stats': abstract.batch_stats})
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), read_only=True)
  state, _ = checkpointer.restore(abstract, signature=signature, step=step)
  checkpointer.close()
  return jax.device_get(state.params)


def test_sigterm_resumes_exactly_and_devices_do_not_change_the_loss(data_dir, tmp_path):
  """Two devices: SIGTERM → checkpoint → resume gives the uninterrupted run's losses and
  parameters exactly; one device gives the same losses (global batch: BN and negatives)."""
  steps = 6
  args = lambda workdir: _args(workdir, data_dir, f'--config.train.steps={steps}',
                               '--config.train.checkpoint_every=3')
  full, stopped, one = (str(tmp_path / n) for n in ('full', 'stopped', 'one'))
  launching.run(args(full), 2)
  run = launching.Process(args(stopped), 2)
  run.wait_for(f'step 2/{steps}')
  run.popen.send_signal(signal.SIGTERM)
  out = run.finish()
  checkpointer = ckpt_lib.Checkpointer(os.path.join(stopped, 'checkpoints'), read_only=True)
  preempted_at = checkpointer.latest_step()
  checkpointer.close()
  assert 2 <= preempted_at < steps, out
  assert f'preempted: saved the checkpoint of step {preempted_at}' in out
  out = launching.run(args(stopped), 2)
  assert f'resumed from step {preempted_at}' in out
  expected, got = launching.logged_losses(full), launching.logged_losses(stopped)
  assert sorted(got) == list(range(1, steps + 1))
  for step in range(1, steps + 1):
    assert got[step] == expected[step] * len(got[step]), step
  config = _small(data_dir, 2)
  chex.assert_trees_all_equal(_final_params(config, stopped, steps),
                              _final_params(config, full, steps))
  launching.run(_args(one, data_dir, '--config.train.steps=2'), 1)
  single = launching.logged_losses(one)
  for step in (1, 2):
    np.testing.assert_allclose(single[step], expected[step], rtol=1e-4)
