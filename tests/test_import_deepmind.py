"""The DeepMind checkpoint importer: name mapping at the released shapes, a round trip through
the CLI into the evaluation binary, and malicious pickles."""

import functools
import os
import pickle
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import mmv_s3d
from configs import mmv_tsm_resnet50
from configs import mmv_tsm_resnet50x2
from mmv import benchmarks
from mmv import evaluate
from mmv import train
from mmv.models import mmv as mmv_model
from mmv.tools import deepmind_checkpoint as release_lib
from mmv.tools import safe_pickle
from tests import haiku_release

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _abstract_variables(config, vocab_size):
  model = mmv_model.build_model(config.model, vocab_size)
  return jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0),
                        *train.dummy_inputs(config.data))


@pytest.mark.parametrize('config_module, video', [(mmv_s3d, 's3d_g'),
                                                  (mmv_tsm_resnet50, 'tsm_resnet50'),
                                                  (mmv_tsm_resnet50x2, 'tsm_resnet50x2')])
def test_every_released_array_maps_onto_the_paper_model(config_module, video):
  """Released shapes (65,536 words): nothing missing, nothing left over, every shape equal."""
  config = config_module.get_config()
  abstract = _abstract_variables(config, 65536)
  release = haiku_release.zeros_like_shapes(haiku_release.release_shapes(video))
  out = release_lib.convert(release['params'], release['state'], abstract, config.model)
  assert jax.tree.map(lambda x: x.shape, out) == jax.tree.map(lambda x: x.shape, abstract)

  # A variable missing from the file, or an extra array in it, is an error naming it.
  params = dict(release['params'])
  stem = 'audio_text_video_model/audio_module/~/res_net_v2/~/initial_conv'
  del params[stem]
  with pytest.raises(release_lib.IncompatibleReleaseError, match='missing.*initial_conv'):
    release_lib.convert(params, release['state'], abstract, config.model)
  params = {**release['params'], 'audio_text_video_model/extra': {'w': np.zeros(3)}}
  with pytest.raises(release_lib.IncompatibleReleaseError, match='unused.*extra'):
    release_lib.convert(params, release['state'], abstract, config.model)


def test_s3d_stem_mismatch_points_at_space_to_depth():
  config = mmv_s3d.get_config()
  config.model.space_to_depth = False
  release = haiku_release.zeros_like_shapes(haiku_release.release_shapes('s3d_g'))
  with pytest.raises(release_lib.IncompatibleReleaseError, match='space_to_depth=True'):
    release_lib.convert(release['params'], release['state'],
                            _abstract_variables(config, 65536), config.model)


def _runlocal_config(data_dir):
  c = mmv_s3d.get_config('runlocal')  # S3D-G and audio ResNet-50 at 1/8 width.
  c.data.data_dir = data_dir
  c.model.dtype = 'float32'  # Faster on CPU; checkpoints do not depend on the compute dtype.
  c.eval.batch_size = 16
  c.eval.linear_c = (1.0,)
  return c


def test_import_round_trip_then_evaluate(data_dir, tmp_path):
  config = _runlocal_config(data_dir)
  vocab_size = len(open(os.path.join(data_dir, 'vocab.txt')).read().split()) + 2
  shapes = haiku_release.release_shapes(
      's3d_g', mult=0.125, vocab_size=vocab_size, word_dim=64, text_hidden=128, va_dim=128,
      vat_dim=64)
  release = haiku_release.random_like_shapes(shapes)
  path = tmp_path / 'mmv_s3d.pkl'
  with open(path, 'wb') as f:
    pickle.dump(release, f)
  workdir = str(tmp_path / 'imported')
  result = subprocess.run(
      [sys.executable, '-m', 'mmv.tools.import_deepmind', str(path), workdir,
       '--config', 'configs/mmv_s3d.py:runlocal', f'--config.data.data_dir={data_dir}',
       '--config.model.dtype=float32'],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'imported' in result.stdout

  # Every array of the file is in the checkpoint, unchanged, once (moving averages as
  # mean/var); only the two heads the reference never trains are left out.
  (_, restored, _), step = evaluate.restore(config, workdir)
  assert step == 0
  arrays = [np.asarray(x).ravel() for x in jax.tree.leaves(restored)]
  expected = [v.ravel() for tree in release.values() for module, d in tree.items()
              for name, v in d.items()
              if name not in ('hidden', 'counter') and 'txt2audio' not in module
              and 'audio2txt' not in module]
  assert len(arrays) == len(expected)
  by_first_value = {a[0]: a for a in arrays}
  for v in expected:
    np.testing.assert_array_equal(by_first_value[v[0]], v)

  # The evaluation binary's code runs on it.
  config.eval.linear_train_passes = config.eval.linear_test_clips = 1
  config.eval.retrieval_clips = 1
  record = evaluate.evaluate_step(
      config, benchmarks.get('synthetic'), benchmarks.prepare('synthetic', data_dir), workdir,
      0, cache_features=False, progress=False)
  assert record['step'] == 0 and record['splits']['test']['retrieval_num_queries'] == 32
  assert 0 <= record['metrics']['linear_top1'] <= 100


class _RunsCode:
  """Unpickling this calls os.system: what a malicious checkpoint would do."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f'touch {self.marker}',))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
  marker = tmp_path / 'ran'
  path = tmp_path / 'evil.pkl'
  evil = {'params': {'audio_text_video_model/x': {'w': np.zeros(2, np.float32)}},
          'state': {'y': _RunsCode(marker)}}
  with open(path, 'wb') as f:
    pickle.dump(evil, f)
  with pytest.raises(safe_pickle.UnsafePickleError, match=r'refusing to load (posix|os)\.system'):
    release_lib.load_release(str(path))
  assert not marker.exists()
  # An array of another class is refused as well (its class would run on load).
  with open(path, 'wb') as f:
    pickle.dump({'params': np.ma.masked_array([1.0])}, f)
  with pytest.raises(safe_pickle.UnsafePickleError):
    safe_pickle.load(str(path))


def test_numpy_data_in_plain_containers_loads(tmp_path):
  tree = {'params': {'m': {'w': np.arange(6, dtype=np.float32).reshape(2, 3)}},
          'state': {'m/~/mean_ema': {'counter': np.int32(3), 'average': np.ones((1, 3))}},
          'extra': [1, 2.5, 'text', (np.float16(1),)]}
  for protocol in (2, 4, 5):
    path = tmp_path / f'ok{protocol}.pkl'
    with open(path, 'wb') as f:
      pickle.dump(tree, f, protocol=protocol)
    loaded = safe_pickle.load(str(path))
    np.testing.assert_array_equal(loaded['params']['m']['w'], tree['params']['m']['w'])
    assert loaded['state']['m/~/mean_ema']['counter'] == 3
    assert loaded['extra'][:3] == [1, 2.5, 'text']
