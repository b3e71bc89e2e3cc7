"""A damaged latest checkpoint: training resumes from the newest intact one and keeps the damaged
one aside; the evaluation names it in one line and still reads the others, moving nothing. A
checkpoint that reads but does not fit the config (another optimiser) is not damaged: training
refuses it in one line, moving nothing, unless asked to restore its parameters only."""

import copy
import glob
import json
import os
import shutil

import chex
import jax
import numpy as np
import optax
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


@pytest.mark.slow
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
@pytest.mark.slow
@pytest.mark.filterwarnings('error::pytest.PytestUnraisableExceptionWarning')
@pytest.mark.parametrize('how', DAMAGES)
def test_evaluation_names_a_damaged_step_and_reads_the_others(series, tmp_path, how):
  config, source, full_params = series
  workdir = str(tmp_path / 'run')
  shutil.copytree(source, workdir)
  _damage(os.path.join(workdir, 'checkpoints', '4'), how)
  before = _tree(workdir)

  assert ckpt_lib.workdir_step(workdir) == 4
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

  monkeypatch.setattr(ckpt_lib.ocp.PyTreeCheckpointHandler, 'restore', out_of_memory)
  with pytest.raises(jax.errors.JaxRuntimeError, match='RESOURCE_EXHAUSTED'):
    train.train(config, workdir)
  assert _tree(os.path.join(workdir, 'checkpoints')) == _tree(os.path.join(source, 'checkpoints'))


def _state_paths(opt_state):
  return {jax.tree_util.keystr(path, simple=True, separator='/')
          for path, _ in jax.tree_util.tree_flatten_with_path(opt_state)[0]}


@pytest.mark.slow
def test_another_optimiser_is_refused_in_one_line_not_taken_for_damage(series, tmp_path):
  """Weight decay turns Adam into AdamW, whose state has another tree: resuming names the
  paths that differ, in one line, and moves nothing; `train.restore_params_only` resumes at the
  saved step and data position with the saved parameters and a new optimiser state."""
  config, source, full_params = series
  workdir = str(tmp_path / 'run')
  shutil.copytree(source, workdir)
  before = _tree(workdir)
  config = copy.deepcopy(config)
  config.optim.weight_decay = 1e-4

  with pytest.raises(ckpt_lib.IncompatibleCheckpointError) as raised:
    train.train(config, workdir)
  message = str(raised.value)
  assert isinstance(raised.value, ckpt_lib.StateMismatchError) and '\n' not in message, message
  # The optimiser states' own paths (optax's, not the checkpoint's): what differs.
  schedule, params = lambda count: 1e-3, {'w': np.zeros(3)}
  differing = (_state_paths(optax.adam(schedule).init(params)) ^
               _state_paths(optax.adamw(schedule, weight_decay=1e-4).init(params)))
  assert differing
  for path in differing:
    assert f'opt_state/{path}' in message, (path, message)
  assert message.startswith('checkpoint 4 in ') and 'restore_params_only=True' in message
  assert _tree(workdir) == before  # Nothing moved or written.

  config.train.restore_params_only = True
  result = train.train(config, workdir)  # Steps = 4: restored, nothing to train.
  assert result['step'] == 4
  state = jax.device_get(result['state'])
  chex.assert_trees_all_equal(state.params, full_params)
  # A new AdamW state (zero moments, no update counted), its schedule at the step.
  new = optax.adamw(schedule, weight_decay=1e-4).init(full_params)
  assert jax.tree.structure(state.opt_state) == jax.tree.structure(new)
  chex.assert_trees_all_equal(state.opt_state[0], new[0])
  assert int(state.opt_state[2].count) == 4

  # From checkpoint 2 (4 removed): the loss of step 3 is the one the series run logged there,
  # so the step, parameters, BatchNorm statistics and data position were all restored. (The
  # series' own steps, not a run of the old config to step 5: one program fewer to compile.)
  earlier = str(tmp_path / 'earlier')
  shutil.copytree(source, earlier)
  shutil.rmtree(os.path.join(earlier, 'checkpoints', '4'))
  resumed = train.train(config, earlier)
  with open(os.path.join(source, 'metrics.jsonl')) as f:
    logged = {record['step']: record['loss'] for record in map(json.loads, f)}
  assert [s for s, _ in resumed['history']] == [3, 4]
  assert resumed['history'][0][1]['loss'] == logged[3]


def test_intact_checkpoints_under_a_path_that_is_no_url_resume(series, tmp_path, capsys):
  """A workdir named like 'runs/exp #3' or 'lr%20sweep' holds intact checkpoints: read as the
  files they are, not as a URL whose '#' starts a fragment and '%20' is a space."""
  config, source, full_params = series
  workdir = str(tmp_path / 'exp #3 lr%20sweep?')
  shutil.copytree(source, workdir)
  result = train.train(config, workdir)

  out = capsys.readouterr().out
  assert 'resumed from step 4' in out and 'skipped' not in out, out
  assert not os.path.exists(os.path.join(workdir, 'checkpoints', 'damaged'))
  assert evaluate.checkpoint_steps(workdir) == [2, 4]
  chex.assert_trees_all_close(jax.device_get(result['state'].params), full_params)
