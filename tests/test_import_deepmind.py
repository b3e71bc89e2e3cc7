"""The DeepMind checkpoint importer on pickles laid out with the names DeepMind's release code
produces (tests/fixtures/release_names_*.json.gz): every array consumed and landing in its
variable, a round trip through the CLI into the evaluation binary, and malicious pickles."""

import functools
import gzip
import json
import os
import pickle
import subprocess

import jax
import numpy as np
import pytest

from configs import mmv_s3d
from configs import mmv_tsm_resnet50
from configs import mmv_tsm_resnet50x2
from mmv import benchmarks
from mmv import checkpoint as ckpt_lib
from mmv import evaluate
from mmv import inference
from mmv.data import synthetic
from mmv.methods import mmv as mmv_method
from mmv.models import mmv as mmv_model
from mmv.tools import deepmind_checkpoint as release_lib
from mmv.tools import safe_pickle
from tests import release_pickles as written
from tests import test_evaluate_binary as evaluate_binary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, 'tests', 'fixtures')
CONFIGS = {'s3d': mmv_s3d, 'tsm_resnet50': mmv_tsm_resnet50}
R = 'text_audio_video/'  # The model's name in the release's config.py.
H = R + '~_get_pair_embedding_heads/'  # Where AudioTextVideoEmbedding builds its heads.
BN = '__cross_replica_batch_norm'
UNUSED_HEADS = ('txt2audio_embd/', 'audio2txt_embd/')  # Built, never trained by the release.
VOCAB_ROWS = 65536  # The released text embedding: 65,534 words, <pad> and <unk>.
# Layers the data feed (pixels, log-mel, word vectors): their input axis keeps its size when a
# network is made wider or narrower.
DATA_FED = ('Conv2d_1a_7x7/~/conv3_d', 'tsm_resnet_stem', '~/initial_conv', 'text_conv1')
NARROWER = 8  # configs/mmv_s3d.py:runlocal: the backbones at 1/8 width.


def release_names(model):
  """{(collection, module, name): (shape, dtype)} of every array DeepMind's release code
  produces for `model`, as recorded from a run of that code."""
  with gzip.open(os.path.join(FIXTURES, f'release_names_{model}.json.gz'), 'rt') as f:
    return {tuple(key.split('|')): (tuple(shape), dtype)
            for key, (shape, dtype) in json.load(f).items()}


def release_tree(names, value=lambda key, shape, dtype: np.zeros(shape, dtype)):
  """{'params': {module: {name: array}}, 'state': {...}}, the released pickle's layout."""
  tree = {'params': {}, 'state': {}}
  for key, (shape, dtype) in names.items():
    collection, module, name = key
    tree[collection].setdefault(module, {})[name] = value(key, shape, dtype)
  return tree


def _abstract_variables(config, vocab_size):
  model = mmv_model.build_model(config.model, vocab_size)
  return jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0),
                        mmv_method.init_batch(config))


def _flat(tree, prefix=''):
  if not isinstance(tree, dict):
    return {prefix[:-1]: tree}
  return {k: v for key, sub in tree.items() for k, v in _flat(sub, f'{prefix}{key}/').items()}


# Release arrays (names as the release code writes them) → the model variable each must reach.
WHERE = {
    's3d': {
        ('params', R + 'visual_module/~/S3D/Conv2d_1a_7x7/~/conv3_d', 'w'):
            'params/video_backbone/Conv2d_1a_7x7/conv_0/kernel',
        ('params', R + 'visual_module/~/S3D/Mixed_4c/Branch_1_Conv2d_0b_3x3/~/conv3_d_1', 'w'):
            'params/video_backbone/Mixed_4c/Branch_1_Conv2d_0b_3x3/conv_1/kernel',
        ('params', R + f'visual_module/~/S3D/Mixed_4c/Branch_1_Conv2d_0b_3x3/{BN}_1', 'scale'):
            'params/video_backbone/Mixed_4c/Branch_1_Conv2d_0b_3x3/bn_1/scale',
        ('params', R + f'visual_module/~/S3D/Mixed_4c/Branch_1_Conv2d_0b_3x3/{BN}_1', 'offset'):
            'params/video_backbone/Mixed_4c/Branch_1_Conv2d_0b_3x3/bn_1/bias',
        ('state', R + f'visual_module/~/S3D/Mixed_4c/Branch_1_Conv2d_0b_3x3/{BN}_1/~/mean_ema',
         'average'): 'batch_stats/video_backbone/Mixed_4c/Branch_1_Conv2d_0b_3x3/bn_1/mean',
        ('state', R + f'visual_module/~/S3D/Mixed_5b/Branch_0_Conv2d_0a_1x1/{BN}/~/var_ema',
         'average'): 'batch_stats/video_backbone/Mixed_5b/Branch_0_Conv2d_0a_1x1/bn_0/var',
        ('params', R + 'visual_module/~/S3D/Mixed_3b/Branch_3_Conv2d_0b_1x1/self_gating', 'w'):
            'params/video_backbone/Mixed_3b/Branch_3_Conv2d_0b_1x1/self_gating/dense/kernel',
    },
    'tsm_resnet50': {
        ('params', R + 'visual_module/~/TSMResNetV2/tsm_resnet_stem', 'w'):
            'params/video_backbone/resnet/initial_conv/kernel',
        ('params', R + 'visual_module/~/TSMResNetV2/tsm_resnet_unit_1/block_0/shortcut_conv',
         'w'): 'params/video_backbone/resnet/unit_1_block_0/shortcut_conv/kernel',
        ('params', R + f'visual_module/~/TSMResNetV2/tsm_resnet_unit_2/block_3/{BN}_2', 'scale'):
            'params/video_backbone/resnet/unit_2_block_3/bn_2/scale',
        ('params', R + f'visual_module/~/TSMResNetV2/{BN}', 'offset'):
            'params/video_backbone/resnet/final_bn/bias',
        ('state', R + f'visual_module/~/TSMResNetV2/tsm_resnet_unit_3/block_2/{BN}/~/mean_ema',
         'average'): 'batch_stats/video_backbone/resnet/unit_3_block_2/bn_0/mean',
    },
}
WHERE_SHARED = {  # The audio and text backbones and the heads: the same in both releases.
    ('params', R + 'audio_module/~/res_net_v2/~/initial_conv', 'w'):
        'params/audio_backbone/initial_conv/kernel',
    ('params', R + 'audio_module/~/res_net_v2/~/block_group_2/block_3/~/conv_1', 'w'):
        'params/audio_backbone/unit_2_block_3/conv_1/kernel',
    ('params', R + f'audio_module/~/res_net_v2/~/block_group_0/block_0/{BN}_2', 'offset'):
        'params/audio_backbone/unit_0_block_0/bn_2/bias',
    ('state', R + f'audio_module/~/res_net_v2/{BN}/~/var_ema', 'average'):
        'batch_stats/audio_backbone/final_bn/var',
    ('params', R + 'text_module/~/text_conv1', 'w'): 'params/text_backbone/conv/kernel',
    ('params', H + 'vid2audio_embd/final_projection_inner', 'w'):
        'params/heads/video_va_proj/Dense_0/kernel',
    ('params', H + 'vid2audio_embd/final_projection_inner', 'b'):
        'params/heads/video_va_proj/Dense_0/bias',
    ('params', H + f'vid2audio_embd/{BN}', 'scale'):
        'params/heads/video_va_proj/BatchNorm_0/scale',
    ('params', H + 'vid2audio_embd/final_projection', 'w'):
        'params/heads/video_va_proj/Dense_1/kernel',
    ('params', H + f'vid2audio_embd/{BN}_1', 'offset'):
        'params/heads/video_va_proj/BatchNorm_1/bias',
    ('state', H + f'vid2audio_embd/{BN}_1/~/mean_ema', 'average'):
        'batch_stats/heads/video_va_proj/BatchNorm_1/mean',
    ('params', H + 'vis_embd/final_projection', 'w'): 'params/heads/va_to_vat/Dense_0/kernel',
    ('state', H + f'vis_embd/{BN}/~/var_ema', 'average'):
        'batch_stats/heads/va_to_vat/BatchNorm_0/var',
    ('params', H + 'audio_embd/final_projection', 'w'): 'params/heads/audio_proj/Dense_0/kernel',
    ('params', H + 'audio_embd/final_projection', 'b'): 'params/heads/audio_proj/Dense_0/bias',
    ('params', H + 'txt_embd/final_projection', 'w'): 'params/heads/text_proj/Dense_0/kernel',
    ('params', H + 'txt_embd/final_projection', 'b'): 'params/heads/text_proj/Dense_0/bias',
}


@pytest.mark.slow
@pytest.mark.parametrize('model', ['s3d', 'tsm_resnet50'])
def test_a_release_pickle_imports_with_every_array_in_its_variable(model, tmp_path):
  """Exactly the release code's keys and shapes (65,536 words): a pickle of zeros but for
  distinct random values in selected arrays, each of which must arrive in its variable."""
  config = CONFIGS[model].get_config()  # S3D-G: space_to_depth=True, as released.
  names = release_names(model)
  where = {**WHERE[model], **WHERE_SHARED}
  assert set(where) <= set(names)
  rng = np.random.default_rng(0)
  marked = {key: rng.standard_normal(names[key][0]).astype(np.float32) for key in where}
  path = tmp_path / 'release.pkl'
  with open(path, 'wb') as f:
    pickle.dump(release_tree(names, lambda k, s, d: marked.get(k, np.zeros(s, d))), f)

  out = release_lib.convert(*release_lib.load_release(str(path)),
                            _abstract_variables(config, VOCAB_ROWS), config.model)
  out = _flat(out)
  # Each model variable takes one release array: all but the moving averages' `hidden` and
  # `counter` and the two heads the release never trains (convert refuses leftovers).
  taken = [k for k in names if k[2] not in ('hidden', 'counter')
           and not any(k[1].startswith(H + head) for head in UNUSED_HEADS)]
  assert len(out) == len(taken)
  for key, variable in where.items():
    np.testing.assert_array_equal(out[variable], marked[key].reshape(out[variable].shape),
                                  err_msg=f'{key} → {variable}')
  assert not any(np.any(v) for k, v in out.items() if k not in where.values())


def test_tsm_resnet50x2_is_the_resnet50_release_twice_as_wide():
  """No names were recorded for x2: its release is TSM-ResNet50's with twice the channels in
  the video trunk (stem included, as the reference's width multiplier), so in the input of the
  video head too."""
  config = mmv_tsm_resnet50x2.get_config()

  def widened(key, shape):
    _, module, name = key
    if '/visual_module/' in module and name != 'counter':
      channel_axes = 2 if name == 'w' and not module.endswith(DATA_FED) else 1
      return shape[:-channel_axes] + tuple(2 * c for c in shape[-channel_axes:])
    if module == H + 'vid2audio_embd/final_projection_inner' and name == 'w':
      return (2 * shape[0], shape[1])
    return shape

  names = {k: (widened(k, shape), dtype) for k, (shape, dtype) in
           release_names('tsm_resnet50').items()}
  tree = release_tree(names, lambda k, s, d: np.broadcast_to(np.zeros((), d), s))
  out = release_lib.convert(tree['params'], tree['state'],
                            _abstract_variables(config, VOCAB_ROWS), config.model)
  out = _flat(out)
  assert out['params/video_backbone/resnet/final_bn/scale'].shape == (4096,)
  assert out['params/heads/video_va_proj/Dense_0/kernel'].shape == (4096, 512)


def test_the_class_default_prefix_imports_too():
  config = mmv_tsm_resnet50.get_config()
  names = {(c, m.replace(R, 'audio_text_video_model/', 1), n): v
           for (c, m, n), v in release_names('tsm_resnet50').items()}
  tree = release_tree(names, lambda k, s, d: np.broadcast_to(np.zeros((), d), s))
  out = release_lib.convert(tree['params'], tree['state'],
                            _abstract_variables(config, VOCAB_ROWS), config.model)
  assert len(_flat(out)) == 522


def _renamed(tree, rename):
  return {c: {rename(m): d for m, d in modules.items()} for c, modules in tree.items()}


def test_unknown_layouts_and_misfits_are_named():
  config = mmv_tsm_resnet50.get_config()
  abstract = _abstract_variables(config, VOCAB_ROWS)
  tree = release_tree(release_names('tsm_resnet50'),
                      lambda k, s, d: np.broadcast_to(np.zeros((), d), s))

  def convert(tree):
    return release_lib.convert(tree['params'], tree['state'], abstract, config.model)

  # Another model name, or heads outside the method scope Haiku gives them.
  with pytest.raises(release_lib.IncompatibleReleaseError, match='under one of text_audio_vid'):
    convert(_renamed(tree, lambda m: m.replace(R, 'mmv/', 1)))
  with pytest.raises(release_lib.IncompatibleReleaseError,
                     match='heads under text_audio_video/~_get_pair_embedding_heads/'):
    convert(_renamed(tree, lambda m: m.replace('~_get_pair_embedding_heads/', '')))
  # A variable missing from the file, or an extra array in it.
  params = dict(tree['params'])
  del params[R + 'audio_module/~/res_net_v2/~/initial_conv']
  with pytest.raises(release_lib.IncompatibleReleaseError, match='missing.*initial_conv'):
    convert({'params': params, 'state': tree['state']})
  params = {**tree['params'], R + 'extra': {'w': np.zeros(3)}}
  with pytest.raises(release_lib.IncompatibleReleaseError, match='unused.*extra'):
    convert({'params': params, 'state': tree['state']})


def test_s3d_stem_mismatch_points_at_space_to_depth():
  config = mmv_s3d.get_config()
  config.model.space_to_depth = False
  tree = release_tree(release_names('s3d'), lambda k, s, d: np.broadcast_to(np.zeros((), d), s))
  with pytest.raises(release_lib.IncompatibleReleaseError, match='space_to_depth=True'):
    release_lib.convert(tree['params'], tree['state'], _abstract_variables(config, VOCAB_ROWS),
                        config.model)


def narrowed_shape(key, shape, vocab_rows):
  """The shape of release array `key` in the same network `NARROWER` times narrower, by the
  release's shape conventions alone: channels are the last axis (the last two of a kernel `w`:
  in, out), every channel axis is divided, but the input axis of a layer the data feed; the
  embedding has `vocab_rows` rows of the released 300 dimensions."""
  _, module, name = key
  if name == 'embeddings':
    return (vocab_rows, shape[1])
  if name == 'counter':
    return shape
  channel_axes = 2 if name == 'w' and not module.endswith(DATA_FED) else 1
  kept, channels = shape[:-channel_axes], shape[-channel_axes:]
  assert all(c % NARROWER == 0 for c in channels), (key, shape)
  return kept + tuple(c // NARROWER for c in channels)


def _trained_like(rng):
  """Values a forward pass stays finite on, chosen by each array's release name alone."""

  def value(key, shape, dtype):
    _, module, name = key
    if name in ('w', 'embeddings'):
      fan_in = int(np.prod(shape[:-1])) if name == 'w' else 1
      return (rng.standard_normal(shape, np.float32) / np.sqrt(fan_in)).astype(dtype)
    if name == 'scale' or (module.endswith('var_ema') and name == 'average'):
      return np.ones(shape, dtype)
    return rng.uniform(-0.1, 0.1, shape).astype(dtype)  # Random: a misplaced one shows.

  return value


def import_narrowed_s3d(tmp_path, data_dir):
  """A narrowed S3D-G release (configs/mmv_s3d.py:runlocal widths, the paper's text and head
  sizes scaled alike) pickled and imported into tmp_path/imported, as a user imports one;
  (workdir, config)."""
  vocab_rows = len(synthetic.vocabulary()) + 2
  names = {k: (narrowed_shape(k, shape, vocab_rows), dtype)
           for k, (shape, dtype) in release_names('s3d').items()}
  release = release_tree(names, _trained_like(np.random.default_rng(0)))
  path = str(tmp_path / 'mmv_s3d.pkl')
  with open(path, 'wb') as f:
    pickle.dump(release, f)
  config = mmv_s3d.get_config('runlocal')
  paper = mmv_s3d.get_config().model
  config.data.data_dir = data_dir
  config.model.word_embedding_dim = paper.word_embedding_dim
  for field in ('text_hidden', 'va_dim', 'vat_dim'):
    config.model[field] = paper[field] // NARROWER
  workdir = str(tmp_path / 'imported')
  release_lib.import_release(path, config, workdir)
  return workdir, config


def _round_trip_command(directory, data_dir):
  """The release's S3D-G pickle (its names; its shapes narrowed by `narrowed_shape`), written as
  DeepMind wrote it (dill 0.3.3, Haiku FlatMappings of jax DeviceArrays: see release_pickles),
  and the CLI's command line importing it: ([command line], (release, config overrides))."""
  vocab_rows = len(synthetic.vocabulary()) + 2
  names = {k: (narrowed_shape(k, shape, vocab_rows), dtype)
           for k, (shape, dtype) in release_names('s3d').items()}
  release = release_tree(names, _trained_like(np.random.default_rng(0)))
  path = directory / 'mmv_s3d.pkl'
  path.write_bytes(written.dumps(written.release(release)))
  # The heads and text narrowed as the rule narrows the release's; the backbones are already.
  paper = mmv_s3d.get_config().model
  overrides = {'data.data_dir': data_dir, 'model.dtype': 'float32',
               'model.word_embedding_dim': paper.word_embedding_dim,
               **{f'model.{f}': paper[f] // NARROWER for f in ('text_hidden', 'va_dim',
                                                                'vat_dim')}}
  return [['-m', 'mmv.tools.import_deepmind', str(path), str(directory / 'imported'),
           '--config', 'configs/mmv_s3d.py:runlocal',
           *(f'--config.{k}={v}' for k, v in overrides.items())]], (release, overrides)


@pytest.mark.slow
def test_import_round_trip_then_evaluate(data_dir, cli):
  """The narrowed release pickle (`_round_trip_command`) through the CLI into the evaluation
  binary, on the synthetic benchmark."""
  directory, [result], (release, overrides) = cli['round_trip']
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'imported' in result.stdout
  workdir = str(directory / 'imported')

  config = mmv_s3d.get_config('runlocal')
  for field, value in overrides.items():
    section, name = field.split('.')
    config[section][name] = value
  # The checkpoint the CLI wrote holds the selected arrays in their variables.
  (_, restored, _), step = inference.restore(config, workdir)
  assert step == 0
  restored = _flat(jax.device_get(restored))
  for (collection, module, name), variable in {**WHERE['s3d'], **WHERE_SHARED}.items():
    np.testing.assert_array_equal(
        restored[variable], release[collection][module][name].reshape(restored[variable].shape))

  config.eval.batch_size = 16
  config.eval.synthetic.c = (1.0,)
  config.eval.synthetic.train_passes = config.eval.synthetic.test_clips = 1
  config.eval.synthetic.retrieval_clips = 1
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
  evil = {'params': {R + 'x': {'w': np.zeros(2, np.float32)}},
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


def test_arrays_holding_objects_are_refused_structured_ones_too(tmp_path):
  """Their items are no weights: a plain object array, and a structured one with an object
  field (whose dtype's kind is 'V', not 'O')."""
  structured = np.zeros(1, dtype=[('w', np.float32), ('x', 'O')])
  structured['x'][0] = {'a': 1}
  for array in (np.array([{'a': 1}], dtype=object), structured):
    path = tmp_path / 'objects.pkl'
    with open(path, 'wb') as f:
      pickle.dump({'params': {'m': {'w': array}}}, f, protocol=2)
    with pytest.raises(safe_pickle.UnsafePickleError, match=r"\['w'\] is an object array"):
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


def _not_pickles(tmp_path):
  """Files a user might pass by mistake: random bytes, a text file, a zip archive (an .npz)."""
  files = {'random.pkl': np.random.default_rng(0).bytes(4096),
           'notes.txt': b'params: see the release page\n'}
  for name, content in files.items():
    (tmp_path / name).write_bytes(content)
  np.savez(tmp_path / 'weights.npz', w=np.zeros(3))
  return [tmp_path / n for n in (*files, 'weights.npz')]


def test_a_file_that_is_not_a_pickle_is_named_in_one_line(tmp_path):
  for path in _not_pickles(tmp_path):
    with pytest.raises(safe_pickle.NotAPickleError) as raised:
      safe_pickle.load(str(path))
    message = str(raised.value)
    assert message.startswith(f'{path} is not a pickle: ') and '\n' not in message, message
  with pytest.raises(safe_pickle.NotAPickleError, match='a zip archive'):
    safe_pickle.load(str(tmp_path / 'weights.npz'))
  # Cut short, a real pickle is no pickle either; a pickle that would run code is still refused
  # as such, not taken for garbage.
  cut = tmp_path / 'cut.pkl'
  cut.write_bytes(pickle.dumps({'params': np.zeros(100)})[:50])
  with pytest.raises(safe_pickle.NotAPickleError, match='cut.pkl'):
    safe_pickle.load(str(cut))
  marker = tmp_path / 'ran'
  evil = tmp_path / 'evil.pkl'
  evil.write_bytes(pickle.dumps({'state': _RunsCode(marker)}))
  with pytest.raises(safe_pickle.UnsafePickleError):
    safe_pickle.load(str(evil))
  assert not marker.exists()


def _import_cli(path, out_dir, *flags):
  """The CLI's command line on a dataset of only a vocabulary (all the importer reads of it)
  beside OUT_DIR."""
  data = out_dir.parent / 'vocab_only'
  data.mkdir(exist_ok=True)
  (data / 'vocab.txt').write_text('cat\ndog\n')
  return ['-m', 'mmv.tools.import_deepmind', str(path), str(out_dir),
          '--config', 'configs/mmv_s3d.py:runlocal', f'--config.data.data_dir={data}', *flags]


def _error_lines(stderr):
  return [l for l in stderr.splitlines() if l.strip() and not l.startswith(('WARNING', 'I0000',
                                                                            'W0000'))]


def _output_directory_in_use(directory):
  out_dir = directory / 'run'
  checkpointer = ckpt_lib.Checkpointer(str(out_dir / 'checkpoints'))
  checkpointer.save(4, {'x': np.zeros(2, np.float32)}, signature={})
  checkpointer.wait_until_finished()
  checkpointer.close()
  before = sorted(p.relative_to(out_dir) for p in out_dir.rglob('*'))
  # The input is not even a pickle: the output directory is checked first.
  return [_import_cli(_not_pickles(directory)[0], out_dir)], before


def _another_layout(directory):
  path = directory / 'other.pkl'  # Another model's names.
  path.write_bytes(pickle.dumps({'params': {'mmv/conv': {'w': np.zeros(3)}}, 'state': {}}))
  return [_import_cli(path, directory / 'out')], None


def _refused_and_missing(directory):
  path = directory / 'evil.pkl'
  path.write_bytes(written.dumps({'params': _RunsCode(directory / 'ran'), 'state': {}}))
  return [_import_cli(path, directory / 'out'),
          _import_cli(directory / 'missing.pkl', directory / 'out')], None


# What each CLI test below runs: {test: (directory) → ([command line], what else it made)}.
CLI_CASES = {
    'round_trip': None,  # _round_trip_command, on the synthetic dataset.
    'not_a_pickle': lambda d: ([_import_cli(_not_pickles(d)[-1], d / 'out')], None),
    'output_directory_in_use': _output_directory_in_use,
    'another_layout': _another_layout,
    'refused_and_missing': _refused_and_missing,
    'verbose': lambda d: ([_import_cli(d / 'missing.pkl', d / 'out', '--verbose')], None),
    # The pickle is never read: the vocabulary is checked first.
    'missing_vocabulary': lambda d: ([_import_cli(d / 'mmv_s3d.pkl', d / 'out',
                                                  f'--config.data.data_dir={d / "none"}')],
                                     None),
}


@pytest.fixture(scope='module')
def cli(data_dir, tmp_path_factory):
  """{case: (its directory, [result of each command line: returncode, stdout, stderr], what
  else it made)} of CLI_CASES, every command line run as `python -m mmv.tools.import_deepmind`
  runs it, on one interpreter start-up (test_evaluate_binary.run_each)."""
  made, commands = {}, []
  for name, setup in CLI_CASES.items():
    directory = tmp_path_factory.mktemp(name)
    lines, extra = (_round_trip_command(directory, data_dir) if name == 'round_trip'
                    else setup(directory))
    made[name] = (directory, len(commands), len(lines), extra)
    commands += lines
  results = [subprocess.CompletedProcess(argv, *r) for argv, r in zip(
      commands, evaluate_binary.run_each(tmp_path_factory.mktemp('cli'), commands,
                                         preload=('mmv.tools.deepmind_checkpoint',)))]
  return {name: (directory, results[start:start + count], extra)
          for name, (directory, start, count, extra) in made.items()}


@pytest.mark.slow
def test_the_cli_names_a_file_that_is_not_a_pickle_in_one_line(cli):
  directory, [result], _ = cli['not_a_pickle']
  path = directory / 'weights.npz'
  assert result.returncode == 1
  assert _error_lines(result.stderr) == [f'error: {path} is not a pickle: a zip archive (an .npz '
                                         'or a PyTorch file?) (--verbose shows the traceback)'
                                         ], result.stderr[-3000:]
  assert not (directory / 'out').exists()  # Nothing written.


@pytest.mark.slow
def test_the_cli_refuses_an_output_directory_with_checkpoints_before_reading(cli):
  directory, [result], before = cli['output_directory_in_use']
  out_dir = directory / 'run'
  assert result.returncode == 1
  assert _error_lines(result.stderr) == [
      f'error: {out_dir / "checkpoints"} already holds checkpoints (steps [4]); give another '
      'OUT_DIR (--verbose shows the traceback)'], result.stderr[-3000:]
  assert sorted(p.relative_to(out_dir) for p in out_dir.rglob('*')) == before


@pytest.mark.slow
def test_the_cli_names_a_release_of_another_layout_in_one_line(cli):
  directory, [result], _ = cli['another_layout']
  assert result.returncode == 1
  assert _error_lines(result.stderr) == [
      "error: not a released MMV checkpoint: expected every module of the checkpoint under one "
      "of text_audio_video, audio_text_video_model (the model name of the release's config.py; "
      "the class default), found ['mmv'] (--verbose shows the traceback)"], result.stderr[-3000:]
  assert not (directory / 'out').exists()


@pytest.mark.slow
def test_the_cli_names_a_refused_pickle_and_a_missing_file_in_one_line(cli):
  directory, [result, missing], _ = cli['refused_and_missing']
  assert result.returncode == 1 and not (directory / 'ran').exists()
  assert _error_lines(result.stderr) == [
      "error: refusing to load dill._dill._import_module('posix'): only modules on the "
      "allow-list (numpy's) are accepted (--verbose shows the traceback)"
  ], result.stderr[-3000:]
  assert missing.returncode == 1
  assert _error_lines(missing.stderr) == [
      f"error: [Errno 2] No such file or directory: '{directory / 'missing.pkl'}' (--verbose "
      'shows the traceback)'], missing.stderr[-3000:]
  assert not (directory / 'out').exists()


@pytest.mark.slow
def test_the_cli_shows_the_traceback_with_verbose(cli):
  _, [result], _ = cli['verbose']
  assert result.returncode == 1
  assert 'Traceback (most recent call last)' in result.stderr
  assert result.stderr.rstrip().splitlines()[-1].startswith('FileNotFoundError: [Errno 2]')


@pytest.mark.slow
def test_the_cli_names_a_missing_vocabulary_in_one_line(cli):
  directory, [result], _ = cli['missing_vocabulary']
  assert result.returncode == 1
  assert _error_lines(result.stderr) == [
      f"error: no vocabulary '{directory / 'none' / 'vocab.txt'}' (data.data_dir/data.vocab of "
      'the config): the released text embedding is copied row by row onto it; pass '
      '--config.data.data_dir=DIR of a dataset with the released vocabulary (--verbose shows the '
      'traceback)'], result.stderr[-3000:]


def test_params_and_state_not_laid_out_by_module_are_named(tmp_path):
  path = tmp_path / 'flat.pkl'
  for tree in ({'params': [np.zeros(3)], 'state': {}},
               {'params': {'text_audio_video/m': np.zeros(3)}, 'state': {}}):
    path.write_bytes(pickle.dumps(tree))
    with pytest.raises(release_lib.IncompatibleReleaseError,
                       match=r'`params` is not a dict \{Haiku module path: \{name: array\}\}'):
      release_lib.load_release(str(path))
