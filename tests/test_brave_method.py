"""BraVe as a method: configs/brave.py trains, its loss is the same sharded as on one device, and
a run stopped by SIGTERM resumes exactly."""

import os
import signal

import chex
import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from configs import brave as brave_config
from mmv import checkpoint as ckpt_lib
from mmv import methods
from mmv import sharding
from mmv import train_step
from tests import launching
from tests import test_preemption

# Launches processes, converts media or trains: not in `make test-fast`.
pytestmark = pytest.mark.slow


def small(data_dir):
  """configs/brave.py:runlocal at test size."""
  c = brave_config.get_config('runlocal')
  c.data.data_dir = data_dir
  c.data.shuffle_buffer = 16
  c.brave.hidden_dim = 32
  c.brave.output_dim = 16
  c.model.width_multiplier = 1 / 32
  c.train.batch_size = 8
  c.train.steps = 3
  c.train.log_every = 1
  c.train.checkpoint_every = 3
  c.optim.warmup_steps = 1
  return c


def final_params(config, workdir, step):
  """The params of `workdir`'s checkpoint of `step` (BraVe's optimiser state: its own abstract
  state, where tests/test_preemption.py builds MMV's)."""
  model = train_step.create_model(config)
  abstract = train_step.abstract_train_state(config, model, train_step.create_optimizer(config),
                                             sharding.make_mesh())
  signature = ckpt_lib.variable_signature(
      {'params': abstract.params, 'batch_stats': abstract.batch_stats})
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), read_only=True)
  state, _ = checkpointer.restore(abstract, signature=signature, step=step)
  checkpointer.close()
  return jax.device_get(state.params)


def test_configs_and_their_errors():
  paper = brave_config.get_config()
  assert paper.method == 'brave' and methods.get(paper) is methods.METHODS['brave']
  methods.get(paper).check_config(paper)
  assert paper.data.views == (('narrow', 16, 2, 224, 'same', False),)
  bad = brave_config.get_config('runlocal')
  bad.brave.narrow_view = 'wide'
  with pytest.raises(ValueError, match="brave.narrow_view='wide' is not among data.views"):
    methods.get(bad).check_config(bad)
  bad = brave_config.get_config('runlocal')
  bad.brave.broad_audio = False
  with pytest.raises(ValueError, match='needs video or audio'):
    methods.get(bad).check_config(bad)
  with pytest.raises(ValueError, match='unknown config argument'):
    brave_config.get_config('runlcoal')
  # The same fields as every config (overrides that work for one work for all).
  from configs import tiny  # pylint: disable=import-outside-toplevel
  from tests import test_configs  # pylint: disable=import-outside-toplevel
  for arg in (None, 'runlocal'):
    assert test_configs._fields(brave_config.get_config(arg)) == test_configs._fields(  # pylint: disable=protected-access
        tiny.get_config())


def test_sharded_loss_and_gradients_equal_single_device(data_dir):
  """BatchNorm statistics and the loss's means span the global batch: a batch split over 8
  devices gives the loss, gradients and new statistics of one device."""
  chex.assert_devices_available(8, 'cpu')
  c = small(data_dir)
  c.brave.broad_video = True
  # runlocal's 1/8 width: at 1/32 a few early layers have 2 channels, whose BatchNorm gradients
  # are sums of nearly cancelling terms that summation order alone moves by percents.
  c.model.width_multiplier = 0.125
  model = train_step.create_model(c)
  variables = train_step.init_variables(jax.random.PRNGKey(0), model, c)
  rng = np.random.default_rng(0)
  # Zero-mean inputs: Flax's BatchNorm takes E[x²] − E[x]², whose float32 rounding on inputs
  # of mean 0.5 (uniform) moves the audio gradients by ~1% between summation orders.
  batch = {k: rng.standard_normal(v.shape).astype(np.float32)
           for k, v in methods.get(c).init_batch(c, batch_size=16).items()}
  batch['mask'] = np.ones(16, np.float32)
  batch['mask'][-2:] = 0
  batch['audio_mask'] = np.ones(16, np.float32)
  batch['audio_mask'][3] = 0
  mesh = sharding.make_mesh()
  loss_fn = train_step.make_loss_fn(c, mesh)
  fn = jax.jit(lambda v, b: train_step.loss_and_grads(v['params'], v['batch_stats'], b,
                                                      model=model, loss_fn=loss_fn))
  single = jax.device_get(fn(*jax.device_put((variables, batch), jax.devices()[0])))
  split = jax.device_put(batch, NamedSharding(mesh, P('data')))
  assert len(split['audio'].addressable_shards) == 8
  multi = jax.device_get(jax.jit(fn, out_shardings=NamedSharding(mesh, P()))(
      jax.device_put(variables, NamedSharding(mesh, P())), split))
  chex.assert_trees_all_close(multi[:2], single[:2], rtol=1e-5)  # Loss and terms.
  chex.assert_trees_all_close(multi[3], single[3], rtol=1e-4, atol=1e-5)  # BN statistics.
  # Gradients, as one vector: float32 summation order moves them by ~1e-3 through the
  # backbones' BatchNorm backward passes (reordering the batch on one device does as much).
  flat = lambda tree: np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])
  g_single, g_multi = flat(single[2]), flat(multi[2])
  assert np.linalg.norm(g_multi - g_single) <= 5e-3 * np.linalg.norm(g_single)
  chex.assert_trees_all_close(multi[2]['head'], single[2]['head'], rtol=1e-3, atol=1e-5)
  # Statistics of each device's share alone would not be those of the batch.
  first = jax.device_get(fn(variables, {k: v[:2] for k, v in batch.items()}))
  assert abs(float(first[0]) - float(single[0])) > 1e-3
  assert set(single[1]) == {'loss_b_to_n_video', 'loss_n_to_b_video', 'loss_b_to_n_audio',
                            'loss_n_to_b_audio'}


def test_runlocal_trains_and_sigterm_resumes_exactly(data_dir, tmp_path):
  """configs/brave.py:runlocal (shrunk) trains the V/A model with finite losses; SIGTERM →
  checkpoint and clean exit → resume: the same loss at every step and identical parameters as
  a run without the stop (through launch.py, 2 devices)."""
  steps = 6
  args = lambda workdir: [
      'tests/slow_steps.py', '--config', 'configs/brave.py:runlocal', f'--workdir={workdir}',
      f'--config.data.data_dir={data_dir}', '--config.data.shuffle_buffer=16',
      '--config.brave.hidden_dim=32', '--config.brave.output_dim=16',
      '--config.model.width_multiplier=0.03125', '--config.train.batch_size=8',
      '--config.train.log_every=1', '--config.optim.warmup_steps=1',
      f'--config.train.steps={steps}', '--config.train.checkpoint_every=3']
  full, stopped = str(tmp_path / 'full'), str(tmp_path / 'stopped')
  launching.run(args(full), test_preemption.DEVICES)
  run = launching.Process(args(stopped), test_preemption.DEVICES)
  run.wait_for(f'step 1/{steps}')
  run.popen.send_signal(signal.SIGTERM)
  out = run.finish()
  preempted_at = test_preemption._latest_step(stopped)  # pylint: disable=protected-access
  assert 1 <= preempted_at < steps
  assert f'preempted: saved the checkpoint of step {preempted_at}' in out
  out = launching.run(args(stopped), test_preemption.DEVICES)
  assert f'resumed from step {preempted_at}' in out
  expected, got = launching.logged_losses(full), launching.logged_losses(stopped)
  assert sorted(got) == list(range(1, steps + 1))
  for step in range(1, steps + 1):
    assert got[step] == expected[step] * len(got[step]), step
  assert all(np.isfinite(v).all() and 0 <= min(v) and max(v) <= 2 for v in got.values())
  config = small(data_dir)
  params = final_params(config, stopped, steps)
  assert set(params) == {'narrow_video', 'broad_audio', 'head'}  # The V/A model.
  chex.assert_trees_all_equal(params, final_params(config, full, steps))
