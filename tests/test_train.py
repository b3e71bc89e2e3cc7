"""Training: checkpoints restore exactly, runs resume where they stopped, bad input is refused."""

import json
import os
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest

from mmv import checkpoint as ckpt_lib
from mmv import optim
from mmv import sharding
from mmv import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _losses(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return {r['step']: r['loss'] for r in map(json.loads, f)}


def test_checkpoint_save_restore_is_identical(config, tmp_path):
  mesh = sharding.make_mesh()
  model = train.create_model(config)
  tx = optim.make_optimizer(config.optim, 10)
  state = train.create_train_state(config, model, tx, mesh)
  state = state.replace(step=state.step + 7)
  abstract = train.abstract_train_state(config, model, tx, mesh)
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
  other = train.create_model(config)
  other_abstract = train.abstract_train_state(config, other, tx, mesh)
  other_sig = ckpt_lib.variable_signature(
      {'params': other_abstract.params, 'batch_stats': other_abstract.batch_stats})
  with pytest.raises(ckpt_lib.IncompatibleCheckpointError, match='text_backbone'):
    ckpt.restore(other_abstract, signature=other_sig)
  with pytest.raises(FileNotFoundError, match='no checkpoint of step 3'):
    ckpt.restore(abstract, signature=signature, step=3)
  ckpt.close()


def test_stopped_run_resumes_and_matches_an_uninterrupted_one(config, tmp_path):
  full = train.train(config, str(tmp_path / 'full'))
  assert full['step'] == 4
  config.train.steps = 2
  first = train.train(config, str(tmp_path / 'resumed'))
  assert first['step'] == 2
  config.train.steps = 4
  second = train.train(config, str(tmp_path / 'resumed'))
  assert [s for s, _ in second['history']] == [3, 4]  # Started at step 3, not 1.
  expected, got = _losses(tmp_path / 'full'), _losses(tmp_path / 'resumed')
  assert sorted(got) == [1, 2, 3, 4]
  np.testing.assert_allclose([got[s] for s in range(1, 5)], [expected[s] for s in range(1, 5)],
                             rtol=1e-6)
  chex.assert_trees_all_close(jax.device_get(second['state'].params),
                              jax.device_get(full['state'].params), rtol=1e-6, atol=1e-7)
  assert ckpt_lib.Checkpointer(str(tmp_path / 'resumed' / 'checkpoints')).all_steps() == [2, 4]
  assert os.path.isdir(tmp_path / 'full' / 'tensorboard')
  assert any(f.startswith('events') for f in os.listdir(tmp_path / 'full' / 'tensorboard'))


def test_training_rejects_a_batch_that_does_not_split_over_devices(config, tmp_path):
  config.train.batch_size = 12
  with pytest.raises(ValueError, match='train.batch_size=12 is not divisible by the 8'):
    train.train(config, str(tmp_path))


def test_launch_rejects_unknown_config_keys(tmp_path):
  result = subprocess.run(
      [sys.executable, 'launch.py', '--config', 'configs/tiny.py', '--workdir', str(tmp_path),
       '--config.trian.steps=5'], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode != 0
  assert 'trian' in result.stderr
  assert not os.path.exists(tmp_path / 'checkpoints')
