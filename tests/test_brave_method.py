"""BraVe as a method: configs/brave.py trains, its loss is the same sharded as on one device, and
a run stopped by SIGTERM resumes exactly."""

import os

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
from mmv import train
from mmv import train_step
from tests import launching
from tests import preempt_in_process
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
  # The tiny backbones (BatchNorm after every convolution, as the ResNets): what is under test
  # is where BraVe's means and statistics are taken, not the backbone; the three ResNet-50s of
  # runlocal took ~60 CPU-s to initialise and compile twice (they train in the test below).
  c.model.video_backbone, c.model.audio_backbone, c.model.width = 'tiny_video', 'tiny_audio', 8
  model = train_step.create_model(c)
  variables = jax.jit(lambda key: train_step.init_variables(key, model, c))(
      jax.random.PRNGKey(0))
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
  on_one = lambda batch: jax.device_get(fn(*jax.device_put((variables, batch),
                                                           jax.devices()[0])))
  single = on_one(batch)
  split = jax.device_put(batch, NamedSharding(mesh, P('data')))
  assert len(split['audio'].addressable_shards) == 8
  multi = jax.device_get(jax.jit(fn, out_shardings=NamedSharding(mesh, P()))(
      jax.device_put(variables, NamedSharding(mesh, P())), split))
  chex.assert_trees_all_close(multi[:2], single[:2], rtol=1e-5)  # Loss and terms.
  chex.assert_trees_all_close(multi[3], single[3], rtol=1e-4, atol=1e-5)  # BN statistics.
  # Gradients, as one vector: float32 summation order moves them through the backbones'
  # BatchNorm backward passes (reordering the batch on one device does as much): ~1e-5 here,
  # ~1e-3 with runlocal's ResNet-50s at 1/8 width.
  flat = lambda tree: np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])
  g_single, g_multi = flat(single[2]), flat(multi[2])
  assert np.linalg.norm(g_multi - g_single) <= 1e-4 * np.linalg.norm(g_single)
  chex.assert_trees_all_close(multi[2]['head'], single[2]['head'], rtol=1e-3, atol=1e-5)
  # Statistics of each device's share alone would not be those of the batch: device 0's 2 rows
  # as a batch of their own (8 copies of them: the same means and BatchNorm statistics, and
  # the program already compiled) give another loss.
  first = on_one({k: np.concatenate([v[:2]] * 8) for k, v in batch.items()})
  assert abs(float(first[0]) - float(single[0])) > 1e-3
  assert set(single[1]) == {'loss_b_to_n_video', 'loss_n_to_b_video', 'loss_b_to_n_audio',
                            'loss_n_to_b_audio'}


def test_runlocal_trains_and_sigterm_resumes_exactly(data_dir, tmp_path, monkeypatch, capsys):
  """configs/brave.py:runlocal (shrunk) trains the V/A model with finite losses; SIGTERM during
  step 2 → its checkpoint and a clean return → the same call resumes: the same loss at every
  step and an identical state (BraVe's networks, LARS state) as a run without the stop.

  In process (8 devices): the signal comes from the step itself (tests/preempt_in_process.py);
  the processes' side (a signal from outside, the exit status, launch.py resuming) is
  tests/test_preemption.py's, whatever the method. The tiny backbones (BatchNorm after every
  convolution, as the ResNets): what is under test is BraVe's training and its state through a
  checkpoint, not the backbones; runlocal's TSM-ResNet-50 and audio ResNet-50, even at 1/32
  width, took ~70 CPU-s to initialise and compile (their shapes are test_backbones.py's, their
  release's names test_brave_checkpoint.py's)."""
  steps = 4
  config = small(data_dir)
  config.model.video_backbone, config.model.audio_backbone = 'tiny_video', 'tiny_audio'
  config.model.width = 8
  config.train.steps = steps
  full, stopped = str(tmp_path / 'full'), str(tmp_path / 'stopped')
  preempt_in_process.compile_once(monkeypatch)
  uninterrupted = train.train(config, full)
  assert not uninterrupted['preempted']
  capsys.readouterr()
  preempt_in_process.sigterm_during_step(monkeypatch, 2)
  summary = train.train(config, stopped)
  assert summary['preempted'] == 'SIGTERM' and summary['step'] == 2  # Not a checkpoint step.
  assert 'preempted: saved the checkpoint of step 2' in capsys.readouterr().out
  assert test_preemption._latest_step(stopped) == 2  # pylint: disable=protected-access
  summary = train.train(config, stopped)
  assert 'resumed from step 2' in capsys.readouterr().out
  assert [s for s, _ in summary['history']] == [3, 4] and not summary['preempted']
  expected, got = launching.logged_losses(full), launching.logged_losses(stopped)
  assert sorted(got) == list(range(1, steps + 1))
  for step in range(1, steps + 1):
    assert got[step] == expected[step] * len(got[step]), step
  assert all(np.isfinite(v).all() and 0 <= min(v) and max(v) <= 2 for v in got.values())
  assert set(summary['state'].params) == {'narrow_video', 'broad_audio', 'head'}  # V/A model.
  # The whole state (parameters, LARS momentum, BatchNorm statistics, step), bit for bit.
  chex.assert_trees_all_equal(jax.device_get(summary['state']),
                              jax.device_get(uninterrupted['state']))
