"""The TensorFlow SavedModel export (mmv.tools.export): loaded by TensorFlow alone in a fresh
process, each signature at two batch sizes gives what the JAX model gives on the same inputs
(the frames normalised, the waveform turned into the pipeline's log-mel, the captions tokenised
by the pipeline's tokenizer), the `image` signature what mmv.inference's embed_images gives;
and the command's refusals."""

import functools
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow as tf

from mmv import checkpoint as ckpt_lib
from mmv import inference
from mmv import media_inputs
from mmv import train_step
from mmv.data import audio as audio_ops
from mmv.data import example as example_ops
from mmv.ingest import images as image_ops
from mmv.data import pipeline
from mmv.methods import mmv as mmv_method
from mmv.tools import export
from tests import conftest

# Launches processes, converts media or trains: not in `make test-fast`.
pytestmark = pytest.mark.slow

# 'Green' and 'two words' are no words the tokenizer makes (it lower-cases and splits): they
# keep their ids, unused.
WORDS = ('red', 'Green', 'green', 'square', 'two words', 'circle', 'moves', 'left', 'right', 'up')
CAPTIONS = ('The red square moves LEFT', 'red square moves left!', 'a green circle and a zebra',
            'the a is', 'Circle moves up then right')
STEP = 3
# The fresh process: TensorFlow and numpy only, nothing of mmv or JAX. For each model
# ROOT/NAME, the outputs of every signature on ROOT/NAME/inputs.npz ('SIGNATURE/BATCH': input).
LOAD_AND_RUN = '''
import os
import sys
import numpy as np
import tensorflow as tf
for name in sys.argv[2:]:
  path = os.path.join(sys.argv[1], name)
  model = tf.saved_model.load(os.path.join(path, 'saved_model'))
  inputs = np.load(os.path.join(path, 'inputs.npz'))
  outputs = {}
  for key in inputs.files:
    signature = model.signatures[key.split('/')[0]]
    [argument] = signature.structured_input_signature[1]
    for output, value in signature(**{argument: tf.constant(inputs[key])}).items():
      outputs[f'{key}/{output}'] = value.numpy()
  np.savez(os.path.join(path, 'outputs.npz'), **outputs)
'''
MODELS = ('tiny', 'audio_resnet50')


def _random_variables(abstract, seed=0):
  """Random values of the abstract tree's shapes, BatchNorm statistics and scales included (so
  that inference-mode BatchNorm is no identity); kernels scaled by their fan-in."""
  rng = np.random.default_rng(seed)

  def value(path, s):
    name = jax.tree_util.keystr(path)
    if "'var'" in name:
      return rng.uniform(0.5, 1.5, s.shape).astype(s.dtype)
    if "'scale'" in name:
      return rng.uniform(0.8, 1.2, s.shape).astype(s.dtype)
    if "'kernel'" in name:
      return (rng.standard_normal(s.shape) / np.sqrt(np.prod(s.shape[:-1]))).astype(s.dtype)
    return (0.1 * rng.standard_normal(s.shape)).astype(s.dtype)

  return jax.tree_util.tree_map_with_path(value, abstract)


def make_run(config, workdir):
  """A workdir as training leaves it (config.json, checkpoint STEP), with random variables."""
  model = train_step.create_model(config)
  abstract = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0),
                        mmv_method.init_batch(config))
  variables = _random_variables({'params': abstract['params'],
                                 'batch_stats': abstract['batch_stats']})
  tx = train_step.create_optimizer(config)
  state = train_step.TrainState(step=np.int32(STEP), params=variables['params'],
                           batch_stats=variables['batch_stats'],
                           opt_state=jax.device_get(tx.init(variables['params'])))
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'))
  checkpointer.save(STEP, state, signature=ckpt_lib.variable_signature(variables))
  checkpointer.wait_until_finished()
  checkpointer.close()
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort())
  return model, variables


def _config(vocab_dir, name):
  c = conftest.small_config(vocab_dir)
  if name == 'tiny':
    c.data.normalization = 'centered'
  else:  # A paper backbone, narrow: the audio ResNet-50 at 1/8 width.
    c.model.audio_backbone = 'audio_resnet50'
    c.model.width_multiplier = 0.125
  return c


def _images(config, b):
  """(b uint8 images [S, S, 3] (S the crop size), what the pipeline makes of them: float32
  [b, S, S, 3] in [0, 1]). An image of the crop's size read at that short side is kept whole:
  the pipeline's pixels are its JPEG frame's, decoded here by TensorFlow."""
  s = config.data.crop_size
  rng = np.random.default_rng(b)
  smooth = rng.uniform(0, 255, (b, s // 4, s // 4, 3))
  arrays = np.clip(np.repeat(np.repeat(smooth, 4, 1), 4, 2) + rng.normal(0, 8, (b, s, s, 3)),
                   0, 255).astype(np.uint8)
  pixels = [tf.io.decode_jpeg(image_ops.read_image(a, short_side=s).jpegs[0]).numpy()
            for a in arrays]
  return list(arrays), (np.stack(pixels) / 255.0).astype(np.float32)


def _inputs(config):
  """{'SIGNATURE/BATCH': input}: every signature at two batch sizes."""
  rng = np.random.default_rng(1)
  d = config.data
  frames = lambda b: (b, d.num_frames, d.crop_size, d.crop_size, 3)
  inputs = {'video/3': rng.uniform(0, 1, frames(3)).astype(np.float32),
            'video_uint8/3': rng.integers(0, 256, frames(3)).astype(np.uint8),
            'audio/3': rng.uniform(-0.5, 0.5, (3, example_ops.num_audio_samples(d))).astype(
                np.float32)}
  for key in list(inputs):  # Batch 1: the first row (the JAX model runs once, at batch 3).
    inputs[key.replace('/3', '/1')] = inputs[key][:1]
  for b in (1, 3):
    inputs[f'image/{b}'] = _images(config, b)[1]
  inputs['text/1'] = np.array(CAPTIONS[:1], np.bytes_)
  inputs[f'text/{len(CAPTIONS)}'] = np.array(CAPTIONS, np.bytes_)
  return inputs


@pytest.fixture(scope='module')
def vocab_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp('vocab')
  (path / 'vocab.txt').write_text(''.join(w + '\n' for w in WORDS))
  return str(path)


@pytest.fixture(scope='module')
def exports(vocab_dir, tmp_path_factory):
  """{name: (config, model, variables, inputs, outputs, SavedModel path)} of MODELS, each
  exported from a run of random variables and loaded by one fresh process."""
  root = tmp_path_factory.mktemp('exports')
  made = {}
  for name in MODELS:
    config = _config(vocab_dir, name)
    model, variables = make_run(config, str(root / name / 'run'))
    path = str(root / name / 'saved_model')
    assert export.export(str(root / name / 'run'), path) == STEP
    inputs = _inputs(config)
    np.savez(root / name / 'inputs.npz', **inputs)
    made[name] = (config, model, variables, inputs, path)
  # The vocabulary file the export wrote went with its temporary directory: the SavedModel
  # reads its own asset.
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  subprocess.run([sys.executable, '-c', LOAD_AND_RUN, str(root), *MODELS], check=True,
                 cwd=str(root), env=env)
  out = {}
  for name, (config, model, variables, inputs, path) in made.items():
    with np.load(root / name / 'outputs.npz') as f:
      out[name] = (config, model, variables, inputs, dict(f), path)
  return out


def _close(actual, expected):
  """Within 1e-5 of the largest magnitude of `expected`: float32 from two compilers."""
  assert actual.shape == expected.shape
  error = np.max(np.abs(actual - expected)) / np.max(np.abs(expected))
  assert error <= 1e-5, error


@pytest.mark.parametrize('name', MODELS)
def test_signatures_give_the_jax_models_embeddings_at_any_batch_size(exports, name):
  config, model, variables, inputs, outputs, _ = exports[name]
  d = config.data
  apply = lambda method, x: jax.tree.map(np.asarray, jax.jit(functools.partial(
      model.apply, method=method))(variables, x))
  expected = {}
  # Batch 1's inputs are batch 3's first rows: what the model gives them is its first rows
  # (inference mode: rows are independent).
  unit = {'video': inputs['video/3'], 'video_uint8': inputs['video_uint8/3'] / 255.0}
  for signature, frames in unit.items():
    # 'centered' (tiny): [0, 1] → [-1, 1]; the other run keeps [0, 1] ('unit').
    frames = frames * 2 - 1 if d.normalization == 'centered' else frames
    expected[f'{signature}/3'] = apply(model.embed_video, frames.astype(np.float32))
  log_mel = audio_ops.log_mel_spectrogram(
      tf.constant(inputs['audio/3']), sample_rate=d.audio_sample_rate,
      window=d.stft_window, hop=d.stft_hop, num_mel_bins=d.num_mel_bins,
      lower_hz=d.mel_lower_hz, upper_hz=d.mel_upper_hz, log_offset=d.log_offset)
  expected['audio/3'] = apply(model.embed_audio, log_mel.numpy())
  for key in list(expected):
    np.testing.assert_array_equal(inputs[key.replace('/3', '/1')], inputs[key][:1])
    expected[key.replace('/3', '/1')] = tuple(x[:1] for x in expected[key])
  for key, (features, va, vat) in expected.items():
    assert features.shape[0] == int(key.split('/')[1])
    for output, value in (('features', features), ('S_va', va), ('S_vat', vat)):
      _close(outputs[f'{key}/{output}'], value)


@pytest.mark.parametrize('name', MODELS)
def test_image_signature_is_what_inference_embeds_of_the_images(exports, name):
  """embed_images (the image read as a 1-frame record, through the evaluation pipeline, into
  the video model deflated on loading) and the SavedModel's `image` (deflated in its graph) on
  the pipeline's pixels; an unreadable image is an error naming it."""
  config, _, _, inputs, outputs, path = exports[name]
  workdir = os.path.join(os.path.dirname(path), 'run')
  model = inference.load(workdir, short_side=config.data.crop_size)
  assert 'no BN re-fit' in model.image_tower
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  for b in (1, 3):
    arrays, pixels = _images(config, b)
    np.testing.assert_array_equal(inputs[f'image/{b}'], pixels)
    embedded = model.embed_images(arrays, batch_size=8)
    assert embedded.features.shape[:2] == (b, 1) and embedded.clip_times is None
    _close(outputs[f'image/{b}/features'], embedded.features[:, 0])
    _close(unit(outputs[f'image/{b}/S_va']), embedded.va)
    _close(unit(outputs[f'image/{b}/S_vat']), embedded.vat)
  with pytest.raises(media_inputs.UnreadableInput, match='nowhere.jpg'):
    model.embed_images([arrays[0], os.path.join(workdir, 'nowhere.jpg')])


@pytest.mark.parametrize('name', MODELS)
def test_text_signature_is_the_pipeline_tokenizer_and_the_text_model(exports, name):
  config, model, variables, inputs, outputs, _ = exports[name]
  tokenizer = pipeline.make_tokenizer(config.data)
  for key in ('text/1', f'text/{len(CAPTIONS)}'):
    tokens = tokenizer(tf.constant(list(inputs[key]))).numpy()
    _close(outputs[f'{key}/S_vat'], np.asarray(model.apply(variables, tokens,
                                                          method=model.embed_text)))
  s_vat = outputs[f'text/{len(CAPTIONS)}/S_vat']
  np.testing.assert_array_equal(s_vat[0], s_vat[1])  # 'the' is a stop word; case, punctuation.
  assert not np.array_equal(s_vat[0], s_vat[2])
  # Stop words alone leave no word: the caption embeds padding, and says so.
  assert outputs[f'text/{len(CAPTIONS)}/has_words'].tolist() == [True, True, True, False, True]


@pytest.mark.parametrize('name', MODELS)
def test_the_vocabulary_is_an_asset_and_the_inputs_are_described(exports, name):
  config, _, _, _, _, output = exports[name]
  with open(os.path.join(output, 'assets', export.VOCAB_ASSET)) as f:
    asset = dict(line.split('\t') for line in f.read().splitlines())
  ids = {w: str(i) for i, w in enumerate(WORDS, start=2)}
  del ids['Green'], ids['two words']
  assert asset == ids
  with open(os.path.join(output, export.INFO_PATH)) as f:
    info = json.load(f)
  d = config.data
  assert info['step'] == STEP
  assert info['video']['frames_per_second'] == d.fps / d.frame_stride
  assert info['audio']['samples'] == d.audio_sample_rate * d.num_frames * d.frame_stride / d.fps
  assert not [p for p in os.listdir(os.path.dirname(output)) if p.startswith('.')]


def test_one_line_refusals_bad_frames_and_overwriting_an_earlier_export_only(
    vocab_dir, tmp_path, monkeypatch, capsys):
  workdir = str(tmp_path / 'run')
  make_run(_config(vocab_dir, 'tiny'), workdir)
  earlier = tmp_path / 'earlier'
  earlier.mkdir()
  (earlier / 'saved_model.pb').write_text('an earlier export')
  other = tmp_path / 'other'
  other.mkdir()
  (other / 'notes.txt').write_text('not an export')

  def error(*flags):
    with pytest.raises(SystemExit) as e:
      export.main(list(flags))
    message = str(e.value)
    assert message.startswith('error: ') and '\n' not in message, message
    return message

  out = ('--output', str(tmp_path / 'out'))
  assert 'no workdir' in error('--workdir', str(tmp_path / 'nowhere'), *out)
  assert 'config.json' in error('--workdir', str(other), *out)
  (other / 'config.json').write_text(open(os.path.join(workdir, 'config.json')).read())
  assert 'no checkpoint in' in error('--workdir', str(other), *out)
  assert 'no checkpoint of step 7' in error('--workdir', workdir, '--step', '7', *out)
  assert '--overwrite' in error('--workdir', workdir, '--output', str(earlier))
  assert 'earlier export only' in error('--workdir', workdir, '--output', str(other),
                                        '--overwrite')
  assert sorted(os.listdir(other)) == ['config.json', 'notes.txt']
  assert not os.path.exists(tmp_path / 'out')

  real_save = tf.saved_model.save

  def failing_save(*args, **kwargs):
    raise OSError('disk full')

  monkeypatch.setattr(tf.saved_model, 'save', failing_save)
  with pytest.raises(OSError, match='disk full'):
    export.main(['--workdir', workdir, '--output', str(earlier), '--overwrite'])
  # The earlier export is untouched and no temporary directory is left beside it.
  assert (earlier / 'saved_model.pb').read_text() == 'an earlier export'
  hidden = lambda: [p for p in os.listdir(tmp_path) if p.startswith('.')]
  assert not hidden()

  monkeypatch.setattr(tf.saved_model, 'save', real_save)
  export.main(['--workdir', workdir, '--output', str(earlier), '--overwrite',
               '--platforms', 'cpu'])
  assert f'checkpoint {STEP} of {workdir}' in capsys.readouterr().out
  assert sorted(os.listdir(earlier)) == ['assets', 'assets.extra', 'fingerprint.pb',
                                         'saved_model.pb', 'variables']
  assert not hidden()

  # Checkpoints without config.json (as mmv.tools.import_deepmind writes them): --config.
  imported = tmp_path / 'imported'
  shutil.copytree(os.path.join(workdir, 'checkpoints'), imported / 'checkpoints')
  assert '--config' in error('--workdir', str(imported), *out)
  export.main(['--workdir', str(imported), '--output', str(tmp_path / 'from_config'),
               '--config', os.path.join(workdir, 'config.json'), '--platforms', 'cpu'])
  assert f'checkpoint {STEP} of {imported}' in capsys.readouterr().out

  # Frames out of [0, 1] (0..255 as floats, the likely mistake) or of another size are errors.
  video = tf.saved_model.load(str(earlier)).signatures['video']
  config = _config(vocab_dir, 'tiny').data
  shape = [1, config.num_frames, config.crop_size, config.crop_size, 3]
  with pytest.raises(tf.errors.InvalidArgumentError, match='video_uint8'):
    video(frames=tf.fill(shape, 255.0))
  with pytest.raises(tf.errors.InvalidArgumentError, match='not compatible with expected'):
    video(frames=tf.fill(shape[:1] + [shape[1] + 1] + shape[2:], 0.5))


def test_a_run_of_another_method_is_refused(tmp_path):
  from configs import gdt  # pylint: disable=g-import-not-at-top
  (tmp_path / 'run').mkdir()
  with pytest.raises(ValueError, match="this run trained method 'gdt'"):
    export.export(str(tmp_path / 'run'), str(tmp_path / 'out'),
                  config=gdt.get_config('runlocal'))
  assert not (tmp_path / 'out').exists()
