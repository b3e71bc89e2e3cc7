"""XDC: its loss against numpy's cross-entropy (8 devices and 1), the classifiers' new start each
round, two rounds of training (labels = the stored centroids' nearest), exact resume through
SIGTERM inside a round."""

import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import xdc as xdc_config
from mmv import checkpoint as ckpt_lib
from mmv import pseudo_labels
from mmv import sharding
from mmv import train
from mmv import train_step
from mmv.methods import xdc
from mmv.models import xdc as xdc_model
from tests import launching
from tests import preempt_in_process

# Launches processes, converts media or trains: not in `make test-fast`.
pytestmark = pytest.mark.slow

SMALL = dict(width=8, k=4, round_steps=3, steps=6, batch_size=16)


def small_config(data_dir, **overrides):
  """configs/xdc.py:runlocal shrunk for tests: 2 rounds of 3 steps on the 64-clip dataset."""
  s = {**SMALL, **overrides}
  c = xdc_config.get_config('runlocal')
  c.data.data_dir = data_dir
  c.data.shuffle_buffer = 16
  c.model.width = s['width']
  c.xdc.k = s['k']
  c.xdc.round_steps = s['round_steps']
  c.xdc.kmeans_iterations = 10
  c.xdc.feature_batch_clips = 16
  c.train.batch_size = s['batch_size']
  c.train.steps = s['steps']
  c.train.log_every = 1
  c.train.checkpoint_every = 100
  c.optim.warmup_steps = 2
  return c


def _numpy_loss(outputs, labels, heads):
  total = 0.0
  for tower, clustering in heads:
    logits = np.asarray(outputs[xdc_model.logits_key(tower, clustering)], np.float64)
    y = labels[clustering]
    valid = y >= 0
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    total += -log_p[valid, y[valid]].mean()
  return total


@pytest.mark.parametrize('variant', ['xdc', 'mdc', 'cdc'])
def test_loss_is_numpy_cross_entropy_on_8_devices_and_on_1(data_dir, variant):
  config = small_config(data_dir)
  config.xdc.variant = variant
  sizes = xdc.clusterings(config)
  rng = np.random.default_rng(0)
  outputs = {xdc_model.logits_key(t, c): rng.normal(size=(16, 4)).astype(np.float32) * 3
             for t, c in xdc.VARIANTS[variant]}
  labels = {name: rng.integers(0, 4, 16) for name in sizes}
  labels[sorted(sizes)[0]][:3] = -1  # Rows without labels: left out.
  packed = pseudo_labels.pack(labels, sizes)
  unpacked = pseudo_labels.unpack(packed, sizes)  # −1 for every clustering of those rows.
  expected = _numpy_loss(outputs, unpacked, xdc.VARIANTS[variant])
  batch = {'pseudo_label': packed, 'mask': np.ones(16, np.float32)}
  for devices in (jax.devices()[:1], jax.devices()):
    mesh = sharding.make_mesh(devices=devices)
    put = lambda x, mesh=mesh: jax.device_put(x, sharding.batch_sharding(mesh))
    loss, terms = jax.jit(xdc.make_loss_fn(config, mesh))(jax.tree.map(put, outputs),
                                                          jax.tree.map(put, batch))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    assert terms['labelled'] == pytest.approx(13 / 16)


def test_a_round_renews_the_classifiers_and_their_optimiser_state_only(data_dir):
  config = small_config(data_dir)
  mesh = sharding.make_mesh()
  model, tx = train_step.create_model(config), train_step.create_optimizer(config)
  state = train_step.create_train_state(config, model, tx, mesh)
  # A state some steps on: moments and counts not zero.
  state = state.replace(step=state.step + 5, opt_state=jax.tree.map(
      lambda x: x + 1 if jnp.issubdtype(x.dtype, jnp.number) else x, state.opt_state))
  before = jax.device_get(state)
  rounds = xdc.rounds(config, str(data_dir), mesh, model, tx,
                      train_step.abstract_train_state(config, model, tx, mesh))
  after = jax.device_get(rounds._reinit(state, jax.random.key(1)))  # pylint: disable=protected-access
  heads = sorted(n for n in before.params if n.startswith(xdc_model.HEAD_PREFIX))
  assert heads == ['head_audio_video', 'head_video_audio']
  for name in before.params:
    if name in heads:  # New, from the key; the shapes as they were.
      assert not np.array_equal(before.params[name]['kernel'], after.params[name]['kernel'])
      assert before.params[name]['kernel'].shape == after.params[name]['kernel'].shape
    else:
      chex.assert_trees_all_equal(before.params[name], after.params[name])
  fresh = tx.init(after.params).inner_states['heads']
  chex.assert_trees_all_equal(after.opt_state.inner_states['heads'].inner_state[0],
                              fresh.inner_state[0])  # Adam: zero moments, count 0.
  chex.assert_trees_all_equal(after.opt_state.inner_states['towers'].inner_state[0],
                              before.opt_state.inner_states['towers'].inner_state[0])
  schedules = [s for s in jax.tree.leaves(after.opt_state, is_leaf=_is_schedule)
               if _is_schedule(s)]
  assert len(schedules) == 2 and all(int(s.count) == 5 for s in schedules)  # The train step.


def _is_schedule(x):
  return isinstance(x, optax.ScaleByScheduleState)


def _restore(config, workdir, step):
  mesh = sharding.make_mesh()
  model, tx = train_step.create_model(config), train_step.create_optimizer(config)
  abstract = train_step.abstract_train_state(config, model, tx, mesh)
  signature = ckpt_lib.variable_signature(
      {'params': abstract.params, 'batch_stats': abstract.batch_stats})
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), read_only=True)
  state, _ = checkpointer.restore(abstract, signature=signature, step=step)
  checkpointer.close()
  return state, (model, tx, abstract, mesh)


ROUNDS = dict(steps=8, round_steps=4)  # 2 rounds of 4 steps.


@pytest.fixture(scope='module')
def two_rounds(data_dir, tmp_path_factory):
  """(config, workdir, summary) of an uninterrupted run of 2 rounds of 4 steps (one per module:
  the two tests below read it). The module's runs compile their train step once."""
  config = small_config(data_dir, **ROUNDS)
  workdir = str(tmp_path_factory.mktemp('xdc_two_rounds'))
  with pytest.MonkeyPatch.context() as monkeypatch:
    preempt_in_process.compile_once(monkeypatch)
    yield config, workdir, train.train(config, workdir)


def test_two_rounds_label_every_record_by_its_nearest_centroid(two_rounds):
  config, workdir, summary = two_rounds
  assert summary['step'] == 8 and not summary['preempted']
  assert sorted(os.listdir(os.path.join(workdir, 'xdc'))) == ['round_0000.npz', 'round_0001.npz']
  assert [s for s, _ in summary['history']] == list(range(1, 9))
  for step, metrics in summary['history']:
    assert np.isfinite(metrics['loss']) and metrics['labelled'] == 1.0, step
  # Round 1 clustered the encoders of step 4 (a checkpoint at each round's end): recomputing
  # their features, each record's label is its nearest stored centroid.
  state, (model, tx, abstract, mesh) = _restore(config, workdir, 4)
  found = pseudo_labels.load(workdir, 1)
  assert found.step == 4 and len(found.keys) == 64
  keys, features = xdc.rounds(config, workdir, mesh, model, tx, abstract).features(state)
  np.testing.assert_array_equal(keys, found.keys)
  for name in ('video', 'audio'):
    x = features[name] / np.linalg.norm(features[name], axis=1, keepdims=True)
    d2 = ((x[:, None] - found.centroids[name][None]) ** 2).sum(-1)
    np.testing.assert_array_equal(found.labels[name], d2.argmin(1))
    assert len(np.unique(found.labels[name])) == 4


def test_sigterm_inside_a_round_resumes_exactly(two_rounds, tmp_path, monkeypatch, capsys):
  """8 steps in rounds of 4; SIGTERM during step 6 (round 1): the resumed run loads round 1's
  labels (no clustering) and ends with the same losses and a bit-identical state as the
  uninterrupted run.

  In process: the signal comes from the step itself (tests/preempt_in_process.py); the
  processes' side (a signal from outside, the exit status, launch.py resuming) is
  tests/test_preemption.py's, whatever the method."""
  config, full, uninterrupted = two_rounds
  stopped = str(tmp_path / 'stopped')
  capsys.readouterr()
  preempt_in_process.sigterm_during_step(monkeypatch, 6)
  summary = train.train(config, stopped)
  out = capsys.readouterr().out
  assert summary['preempted'] == 'SIGTERM' and summary['step'] == 6, out  # Inside round 1.
  assert 'preempted: saved the checkpoint of step 6' in out
  checkpointer = ckpt_lib.Checkpointer(os.path.join(stopped, 'checkpoints'), read_only=True)
  assert checkpointer.all_steps() == [4, 6]  # Round 0's end, and the stop.
  checkpointer.close()
  written = os.path.getmtime(pseudo_labels.round_path(stopped, 1))

  summary = train.train(config, stopped)
  out = capsys.readouterr().out
  assert 'resumed from step 6' in out and 'k-means' not in out, out
  assert [s for s, _ in summary['history']] == [7, 8] and not summary['preempted']
  assert os.path.getmtime(pseudo_labels.round_path(stopped, 1)) == written
  expected, got = launching.logged_losses(full), launching.logged_losses(stopped)
  assert sorted(got) == list(range(1, 9))
  for step in range(1, 9):
    assert got[step] == expected[step] * len(got[step]), step
  # The whole state (parameters, optimiser and BatchNorm state, step), bit for bit.
  chex.assert_trees_all_equal(jax.device_get(summary['state']),
                              jax.device_get(uninterrupted['state']))


def test_config_has_the_common_fields_and_bad_settings_are_clear_errors(data_dir):
  from configs import tiny  # pylint: disable=g-import-not-at-top
  fields = lambda c, p='': set().union(*[fields(v, f'{p}{k}.') if hasattr(v, 'items')
                                          else {p + k} for k, v in c.items()])
  for arg in (None, 'runlocal'):
    assert fields(xdc_config.get_config(arg)) == fields(tiny.get_config()), arg
  for change, message in ((('xdc', 'variant', 'xcd'), "xdc.variant='xcd'"),
                          (('xdc', 'k', 1), 'xdc.k=1 must be ≥ 2'),
                          (('xdc', 'kmeans_init', 'kmeans'), 'xdc.kmeans_init'),
                          (('data', 'with_keys', False), 'set data.with_keys=True'),
                          (('data', 'modalities', ('video', 'audio', 'text')), 'XDC trains on'),
                          (('xdc', 'k', 2**16), 'do not pack into one int32')):
    config = small_config(data_dir)
    config[change[0]][change[1]] = change[2]
    with pytest.raises(ValueError, match=message):
      xdc.check_config(config)
