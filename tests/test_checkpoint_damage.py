"""A damaged latest checkpoint: training resumes from the newest intact one and keeps the damaged
one aside; the evaluation names it in one line and still reads the others, moving nothing."""

import glob
import os
import shutil

import chex
import jax
import numpy as np
import pytest

from mmv import checkpoint as ckpt_lib
from mmv import evaluate
from mmv import inference
from mmv import train
from tests import conftest


@pytest.fixture(scope='module')
def series(data_dir, tmp_path_factory):
  """(config, workdir, final params) of a tiny 4-step run: checkpoints at steps 2 and 4."""
  config = conftest.small_config(data_dir)
  workdir = str(tmp_path_factory.mktemp('series'))
  result = train.train(config, workdir)
  assert result['step'] == 4
  return config, workdir, jax.device_get(result['state'].params)


def _truncate(path, size):
  with open(path, 'r+b') as f:
    f.truncate(size)


def _damage(step_dir, how):
  """Damages checkpoint `step_dir` as a full disk or a lost file would; the path damaged."""
  if how == 'ocdbt_data':  # Every array data file cut short.
    paths = glob.glob(os.path.join(step_dir, 'state', 'ocdbt.process_0', 'd', '*'))
    assert paths
    for path in paths:
      _truncate(path, 10)
    return paths[0]
  if how == 'manifest':  # The OCDBT manifest cut short (it is at least 16 bytes long).
    path = os.path.join(step_dir, 'state', 'manifest.ocdbt')
    _truncate(path, 5)
    return path
  assert how == 'meta'  # The JSON item (step, variable signature, data state) lost.
  path = os.path.join(step_dir, 'meta', 'metadata')
  os.remove(path)
  return path


def _tree(directory):
  return sorted((os.path.relpath(p, directory), os.path.getsize(p))
                for p in glob.glob(os.path.join(directory, '**'), recursive=True))


DAMAGES = ('ocdbt_data', 'manifest', 'meta')


@pytest.mark.parametrize('how', DAMAGES)
def test_training_resumes_from_the_newest_intact_checkpoint(series, tmp_path, capsys, how):
  config, source, full_params = series
  workdir = str(tmp_path / 'run')
  shutil.copytree(source, workdir)
  checkpoints = os.path.join(workdir, 'checkpoints')
  damaged_file = _damage(os.path.join(checkpoints, '4'), how)
  damaged_before = _tree(os.path.join(checkpoints, '4'))

  result = train.train(config, workdir)

  out = capsys.readouterr().out
  skipped = [line for line in out.splitlines() if line.startswith('skipped checkpoint 4')]
  assert len(skipped) == 1 and 'damaged' in skipped[0], out
  assert 'resumed from step 2' in out
  assert [s for s, _ in result['history']] == [3, 4]  # Steps 3 and 4 again, from step 2.
  # The same data and updates as the uninterrupted run: its final parameters again.
  chex.assert_trees_all_close(jax.device_get(result['state'].params), full_params,
                              rtol=1e-6, atol=1e-7)
  # The damaged checkpoint is kept, file for file, outside orbax's step list...
  moved = glob.glob(os.path.join(checkpoints, 'damaged', '4-*'))
  assert len(moved) == 1 and moved[0] in skipped[0]
  assert _tree(moved[0]) == damaged_before
  assert os.path.exists(os.path.join(moved[0], os.path.relpath(damaged_file, os.path.join(
      checkpoints, '4')))) == (how != 'meta')
  # ...and step 4 was saved again, whole: it restores.
  assert evaluate.checkpoint_steps(workdir) == [2, 4]
  (_, variables, _), step = inference.restore(config, workdir)
  assert step == 4
  chex.assert_trees_all_close(jax.device_get(variables['params']), full_params,
                              rtol=1e-6, atol=1e-7)


# A damaged manifest used to leave tensorstore callbacks raising 'Event loop is closed' (each a
# printed traceback) after the error: they are pytest's unraisable-exception warnings.
@pytest.mark.filterwarnings('error::pytest.PytestUnraisableExceptionWarning')
@pytest.mark.parametrize('how', DAMAGES)
def test_evaluation_names_a_damaged_step_and_reads_the_others(series, tmp_path, how):
  config, source, full_params = series
  workdir = str(tmp_path / 'run')
  shutil.copytree(source, workdir)
  _damage(os.path.join(workdir, 'checkpoints', '4'), how)
  before = _tree(workdir)

  assert inference.latest_step(workdir) == 4
  with pytest.raises(ckpt_lib.DamagedCheckpointError) as raised:
    inference.restore(config, workdir)
  message = str(raised.value)
  assert raised.value.step == 4 and '\n' not in message and len(message) < 600, message
  assert message.startswith('checkpoint 4 in ') and 'the other steps there: [2]' in message
  # --step reads an intact one; the evaluation moved nothing.
  (_, variables, _), step = inference.restore(config, workdir, step=2)
  assert step == 2
  assert not np.allclose(jax.device_get(variables['params'])['heads']['text_proj']['Dense_0'][
      'kernel'], full_params['heads']['text_proj']['Dense_0']['kernel'])  # Step 2, not 4.
  assert _tree(workdir) == before


def test_a_device_failure_is_not_taken_for_damage(series, tmp_path, monkeypatch):
  """Only a failure to read the files marks a checkpoint damaged: an error of the device (out
  of memory) propagates, and nothing is moved."""
  config, source, _ = series
  workdir = str(tmp_path / 'run')
  shutil.copytree(source, workdir)

  def out_of_memory(*args, **kwargs):
    raise jax.errors.JaxRuntimeError('RESOURCE_EXHAUSTED: out of memory')

  monkeypatch.setattr(ckpt_lib.ocp.CheckpointManager, 'restore', out_of_memory)
  with pytest.raises(jax.errors.JaxRuntimeError, match='RESOURCE_EXHAUSTED'):
    train.train(config, workdir)
  assert _tree(os.path.join(workdir, 'checkpoints')) == _tree(os.path.join(source, 'checkpoints'))
