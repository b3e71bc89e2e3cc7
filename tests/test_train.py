"""Training: checkpoints restore exactly, runs resume where they stopped, bad input is refused."""

import json
import os
import threading

import chex
import jax
import numpy as np
import pytest
import tensorflow as tf

from mmv import checkpoint as ckpt_lib
from mmv import optim
from mmv import sharding
from mmv import train
from mmv import train_step
from tests import preempt_in_process


def _losses(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return {r['step']: r['loss'] for r in map(json.loads, f)}


@pytest.mark.slow
def test_checkpoint_save_restore_is_identical(config, tmp_path):
  mesh = sharding.make_mesh()
  model = train_step.create_model(config)
  tx = optim.make_optimizer(config.optim, 10)
  state = train_step.create_train_state(config, model, tx, mesh)
  state = state.replace(step=state.step + 7)
  abstract = train_step.abstract_train_state(config, model, tx, mesh)
  signature = ckpt_lib.variable_signature(state.variables())
  ckpt = ckpt_lib.Checkpointer(str(tmp_path / 'ckpt'))
  ckpt.save(7, state, signature=signature)
  ckpt.wait_until_finished()
  restored, meta = ckpt.restore(abstract, signature=signature)
  assert meta['step'] == 7 and int(restored.step) == 7
  chex.assert_trees_all_equal(jax.device_get(restored), jax.device_get(state))
  assert restored.params['heads']['text_proj']['Dense_0']['kernel'].sharding.is_fully_replicated

  # A checkpoint of another model (other widths) is refused with the differing names.
  config.model.text_hidden = 48
  other = train_step.create_model(config)
  other_abstract = train_step.abstract_train_state(config, other, tx, mesh)
  other_sig = ckpt_lib.variable_signature(
      {'params': other_abstract.params, 'batch_stats': other_abstract.batch_stats})
  with pytest.raises(ckpt_lib.IncompatibleCheckpointError, match='text_backbone'):
    ckpt.restore(other_abstract, signature=other_sig)
  with pytest.raises(FileNotFoundError, match='no checkpoint of step 3'):
    ckpt.restore(abstract, signature=signature, step=3)
  ckpt.close()


@pytest.mark.slow
def test_stopped_run_resumes_and_matches_an_uninterrupted_one(config, tmp_path):
  """A run stopped at step 2 (a SIGTERM while it waits for the input of step 3) resumes at step
  3 and logs the losses of an uninterrupted one. It resumes inside the profile window (2, 4):
  it traces the rest, steps 3 and 4. (One resumed run serves both checks, which were two
  tests; stopped by a signal, not by a 2-step config: the one program of the 4-step run.)"""
  full = train.train(config, str(tmp_path / 'full'))
  assert full['step'] == 4
  released = threading.Event()
  try:
    first = train.train(config, str(tmp_path / 'resumed'),
                        input_fn=preempt_in_process.sigterm_after_batches(2, released))
  finally:
    released.set()
  assert first['step'] == 2 and first['preempted'] == 'SIGTERM'
  config.profile_steps = (2, 4)  # Resumes at step 2: traces steps 3 and 4.
  second = train.train(config, str(tmp_path / 'resumed'))
  assert second['step'] == 4
  assert [s for s, _ in second['history']] == [3, 4]  # Started at step 3, not 1.
  traces = [f for _, _, files in os.walk(tmp_path / 'resumed' / 'profile') for f in files]
  assert any(f.endswith('.xplane.pb') for f in traces), traces
  expected, got = _losses(tmp_path / 'full'), _losses(tmp_path / 'resumed')
  assert sorted(got) == [1, 2, 3, 4]
  np.testing.assert_allclose([got[s] for s in range(1, 5)], [expected[s] for s in range(1, 5)],
                             rtol=1e-6)
  chex.assert_trees_all_close(jax.device_get(second['state'].params),
                              jax.device_get(full['state'].params), rtol=1e-6, atol=1e-7)
  assert ckpt_lib.Checkpointer(str(tmp_path / 'resumed' / 'checkpoints')).all_steps() == [2, 4]
  assert os.path.isdir(tmp_path / 'full' / 'tensorboard')
  assert any(f.startswith('events') for f in os.listdir(tmp_path / 'full' / 'tensorboard'))


@pytest.mark.slow
def test_metrics_stay_on_the_devices_between_log_steps(config, tmp_path, monkeypatch):
  """4 steps logged every 2: metrics reach the host twice (at steps 2 and 4, the latter also
  the checkpoint step), not at every step; each record holds its own step's metrics, in
  metrics.jsonl and TensorBoard alike. (4 steps: the program the other tests compile.)"""
  config.train.steps, config.train.log_every, config.train.checkpoint_every = 4, 2, 4
  computed = []  # Each step's metrics as the step returned them, fetched after the run.

  def recording_compile(*args):
    step_fn, flops = compile_train_step(*args)

    def step(state, batch):
      state, metrics = step_fn(state, batch)
      computed.append(metrics)
      return state, metrics

    return step, flops

  compile_train_step = train.compile_train_step
  monkeypatch.setattr(train, 'compile_train_step', recording_compile)
  fetches = []
  device_get = jax.device_get
  monkeypatch.setattr(jax, 'device_get', lambda x: fetches.append(x) or device_get(x))
  summary = train.train(config, str(tmp_path))
  monkeypatch.undo()
  assert summary['step'] == 4 and len(computed) == 4
  assert len(fetches) == 2, [jax.tree.structure(f) for f in fetches]

  computed = {s: jax.device_get(m) for s, m in enumerate(computed, 1)}
  logged = dict(summary['history'])
  assert sorted(logged) == [2, 4]
  with open(tmp_path / 'metrics.jsonl') as f:
    records = {r.pop('step'): r for r in map(json.loads, f)}
  assert records == logged
  tensorboard = {}
  for name in os.listdir(tmp_path / 'tensorboard'):
    for event in tf.compat.v1.train.summary_iterator(str(tmp_path / 'tensorboard' / name)):
      for value in event.summary.value:
        tensorboard[event.step, value.tag] = value.simple_value
  for step in (2, 4):
    for key in ('loss', 'loss_va', 'loss_vt', 'grad_norm'):
      assert logged[step][key] == float(computed[step][key]), (step, key)
      assert tensorboard[step, key] == np.float32(logged[step][key]), (step, key)
    assert logged[step]['nonfinite'] == 0 and tensorboard[step, 'nonfinite'] == 0
    assert logged[step]['examples_per_sec'] > 0


def test_training_rejects_a_batch_that_does_not_split_over_devices(config, tmp_path):
  config.train.batch_size = 12
  with pytest.raises(ValueError, match='train.batch_size=12 is not divisible by the 8'):
    train.train(config, str(tmp_path))

