"""The BN re-fit of a deflated model (python -m mmv.tools.deflate): it lowers the L1 between
the deflated network on held-out frames and the video network on their static videos, changes
nothing but the video backbone's BatchNorm scales and offsets, writes a workdir that
mmv.inference loads (and never touches the source workdir), resumes a stopped fit, refuses what
it must in one line, and runs on a workdir made by the DeepMind importer."""

import hashlib
import json
import os

import flax
import jax
import numpy as np
import pytest

from configs import brave
from mmv import checkpoint as ckpt_lib
from mmv import inference
from mmv import preemption
from mmv.tools import deflate as tool
from tests import conftest
from tests import test_export
from tests import test_import_deepmind as release_test


def _small(config, steps=12):
  config = tool.settings(config, steps=steps, batch_size=16)
  with config.unlocked():
    config.deflate.log_every, config.deflate.checkpoint_every = 4, 4
    config.deflate.held_out_batches = 2
  return config


@pytest.fixture(scope='module')
def workdir(data_dir, tmp_path_factory):
  """A tiny run's workdir: config.json and a checkpoint of random variables (BN statistics and
  scales away from their initial values, as in a trained model)."""
  path = str(tmp_path_factory.mktemp('run'))
  test_export.make_run(conftest.small_config(data_dir), path)
  return path


def _digest(directory):
  out = {}
  for root, _, files in os.walk(directory):
    for name in files:
      with open(os.path.join(root, name), 'rb') as f:
        out[os.path.relpath(os.path.join(root, name), directory)] = hashlib.sha256(
            f.read()).hexdigest()
  return out


def _flat(variables):
  return {'/'.join(k): np.asarray(v) for k, v in
          flax.traverse_util.flatten_dict(jax.device_get(variables)).items()}


def _main(*argv):
  """tool.main, as `python -m mmv.tools.deflate ARGV` runs it."""
  tool.main(list(argv))


@pytest.mark.slow
def test_the_refit_lowers_the_held_out_l1_and_fits_only_batchnorm(workdir, tmp_path, capsys):
  before = _digest(workdir)
  output = str(tmp_path / 'image')
  _main('--workdir', workdir, '--output', output, '--steps', '12', '--batch_size', '16')
  line = capsys.readouterr().out.strip().splitlines()[-1]
  print(line)
  assert line.startswith(f'wrote {output}: L1 ') and 'held-out (test' in line
  with open(os.path.join(output, tool.REPORT)) as f:
    report = json.load(f)
  held_out = report['held_out_l1']
  assert held_out['frames'] > 0 and report['steps'] == 12
  assert held_out['after'] < 0.8 * held_out['before'], held_out
  assert _digest(workdir) == before  # The source is only read.
  assert sorted(os.listdir(tmp_path)) == ['image']  # No .partial left.

  refitted, on_the_fly = inference.load(output), inference.load(workdir)
  assert refitted.config.model.deflated and 're-fitted' in refitted.image_tower
  fitted = _flat(refitted.checkpoint.restored[1])
  deflated = _flat(on_the_fly.checkpoint.image_restored[1])
  assert fitted.keys() == deflated.keys()
  changed = {k for k in fitted if not np.array_equal(fitted[k], deflated[k])}
  # BatchNorm modules: those with statistics.
  norms = {k.rsplit('/', 1)[0].replace('batch_stats/', 'params/', 1) for k in fitted
           if k.startswith('batch_stats/')}
  assert changed and all(k.startswith('params/video_backbone/') and k.rsplit('/', 1)[0] in norms
                         and k.rsplit('/', 1)[1] in ('scale', 'bias') for k in changed), changed
  image = np.random.default_rng(0).integers(0, 255, (48, 64, 3)).astype(np.uint8)
  a, b = refitted.embed_images([image]), on_the_fly.embed_images([image])
  assert a.features.shape == b.features.shape and not np.allclose(a.features, b.features)


@pytest.mark.slow
def test_a_stopped_fit_resumes(workdir, tmp_path, monkeypatch, capsys):
  output = str(tmp_path / 'image')
  config = _small(inference.read_run_config(workdir), steps=8)
  monkeypatch.setattr(preemption.PreemptionWatcher, 'should_stop', lambda self, step: step == 4)
  assert tool.run(config, workdir, output) is None
  assert not os.path.exists(output)
  assert ckpt_lib.existing_steps(os.path.join(output + '.partial', 'checkpoints')) == [4]
  monkeypatch.undo()
  report = tool.run(config, workdir, output)
  assert 'resumed the fit at step 4' in capsys.readouterr().out
  assert report['steps'] == 8 and not os.path.exists(output + '.partial')
  assert ckpt_lib.existing_steps(os.path.join(output, 'checkpoints')) == [8]
  # Another fit into the same output: refused unless --overwrite, which replaces it.
  with pytest.raises(tool.OutputError, match='--overwrite'):
    tool.run(config, workdir, output)
  assert tool.run(_small(config, steps=2), workdir, output, overwrite=True)['steps'] == 2


def test_refusals_are_one_line(workdir, data_dir, tmp_path):
  other = tmp_path / 'mine'
  other.mkdir()
  (other / 'notes.txt').write_text('user data')

  def error(*argv):
    with pytest.raises(SystemExit) as e:
      _main(*argv)
    message = str(e.value)
    assert message.startswith('error: ') and '\n' not in message, message
    return message

  assert '--overwrite' in error('--workdir', workdir, '--output', str(other))
  assert 'output of mmv.tools.deflate only' in error('--workdir', workdir, '--output',
                                                     str(other), '--overwrite')
  assert (other / 'notes.txt').read_text() == 'user data'
  assert 'inside' in error('--workdir', workdir, '--output', os.path.join(workdir, 'image'))
  assert 'no workdir' in error('--workdir', str(tmp_path / 'nowhere'), '--output',
                               str(tmp_path / 'out'))
  config = brave.get_config('runlocal')
  config.data.data_dir = data_dir
  with pytest.raises(ValueError, match="method 'brave' has no single video backbone"):
    tool.run(tool.settings(config), workdir, str(tmp_path / 'out'))
  assert not os.path.exists(tmp_path / 'out')


@pytest.mark.slow
def test_an_imported_deepmind_s3d_release_deflates(data_dir, tmp_path):
  """The S3D-G release (space-to-depth stem) narrowed as tests/test_import_deepmind.py does,
  imported (no config.json: the config is given), deflated and measured on held-out frames
  (no fit step: compiling S3D-G's step takes half a minute on a CPU; the steps are the tiny
  model's above, the same code)."""
  workdir, config = release_test.import_narrowed_s3d(tmp_path, data_dir)
  config = tool.settings(config, steps=0, batch_size=8)
  with config.unlocked():
    config.deflate.held_out_batches = 1
  report = tool.run(config, workdir, str(tmp_path / 'image'))
  print(tool.summary(report))
  held_out = report['held_out_l1']
  assert report['steps'] == 0 and held_out['frames'] == 8
  assert 0 < held_out['before'] == held_out['after'] < held_out['video_feature_mean_abs']
  assert ckpt_lib.existing_steps(os.path.join(tmp_path, 'image', 'checkpoints')) == [0]
  with open(os.path.join(tmp_path, 'image', 'config.json')) as f:
    model = json.load(f)['model']
  assert model['space_to_depth'] and model['deflated']
