"""Exports a training run's checkpoint as a TensorFlow SavedModel, for users without JAX.

    python -m mmv.tools.export --workdir WORKDIR [--step N] --output DIR [--overwrite] \
        [--platforms cpu,cuda]

The model is the one in WORKDIR/config.json with the variables of checkpoint N (the latest by
default), computing in float32. Like DeepMind's TF-Hub release of MMV, the SavedModel has one
signature per modality, each taking a batch of any size B:
  video        float32 frames [B, T, S, S, 3] in [0, 1] → features, S_va, S_vat
  video_uint8  uint8 frames [B, T, S, S, 3] (0..255)    → features, S_va, S_vat
  image        float32 images [B, S, S, 3] in [0, 1]    → features, S_va, S_vat
  audio        float32 mono waveform [B, N] in [-1, 1]  → features, S_va, S_vat
  text         string captions [B]                      → S_vat, has_words
`features` are the backbone's pooled features (what the linear probe classifies), S_va and S_vat
the embeddings in the video–audio and video–audio–text spaces, unnormalised (compare them by
cosine). T and S are the run's `data.num_frames` and `data.crop_size`: frames sampled at
`data.fps / data.frame_stride` per second, RGB, cropped square; the graph divides uint8 frames by
255 and applies the run's `data.normalization`. N is as many samples at `data.audio_sample_rate`
as the clip lasts (num_frames · frame_stride / fps seconds); the graph computes the pipeline's
log-mel spectrogram. The captions go through the run's tokenizer (lower case, words of letters
and digits, its stop words dropped, the first `data.max_words` kept) over its vocabulary, which
the SavedModel holds as an asset; `has_words` is false for a caption with no word left, which
embeds as padding alone. DIR/assets.extra/mmv_export.json records the checkpoint and these
sizes. Graphs with the `disjoint` head have no audio–text space: their `audio` has no S_vat.
`image` is the video tower deflated into an image tower (`mmv.models.deflate`): a workdir of
`python -m mmv.tools.deflate` (BN re-fitted), else the video model deflated in the graph (no
re-fit); images cropped and resized to S as `mmv.inference.Model.embed_images` does.

The JAX functions are serialised as StableHLO for the `--platforms` given (jax2tf native
serialisation; matrix products at float32 precision), so the SavedModel runs there without JAX;
the batch size is symbolic. It is written under a temporary name beside DIR and renamed when
complete; an existing non-empty DIR is refused unless --overwrite, which replaces an earlier
export only (a directory holding saved_model.pb).
"""

import argparse
import copy
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile

import jax
from jax.experimental import jax2tf
import jax.numpy as jnp
import numpy as np
import tensorflow as tf

from mmv import checkpoint as ckpt_lib
from mmv import inference
from mmv import train_step as step_lib
from mmv.data import audio as audio_ops
from mmv.data import augment
from mmv.data import example as example_ops
from mmv.data import pipeline
from mmv.data import text as text_ops
from mmv.models import deflate

VOCAB_ASSET = 'vocab.tsv'  # Lines `word<TAB>id`: the training run's ids (from 2).
INFO_PATH = os.path.join('assets.extra', 'mmv_export.json')
PLATFORMS = ('cpu', 'cuda', 'tpu')
SIGNATURES = ('video', 'video_uint8', 'image', 'audio', 'text')
TOKEN = '[a-z0-9]+'  # What the tokenizer's words are made of: the complement of fmt.NON_WORD.


def export_config(config):
  """The run's config as exported: float32 compute, variables on one replicated mesh."""
  c = copy.deepcopy(config)
  c.eval.dtype = 'float32'
  c.mesh.data, c.mesh.fsdp, c.mesh.param_rules = -1, 1, (('.*', 'replicate'),)
  return c


def check_output(output, overwrite):
  """Refuses `output` if it is a non-empty directory (with --overwrite: one that is not an
  earlier export) or a file."""
  if not os.path.lexists(output):
    return
  if not os.path.isdir(output):
    raise FileExistsError(f'--output {output} exists and is not a directory')
  if not os.listdir(output):
    return
  if not overwrite:
    raise FileExistsError(f'--output {output} is not empty; pass --overwrite to replace an '
                          'earlier export there')
  if not os.path.exists(os.path.join(output, 'saved_model.pb')):
    raise FileExistsError(f'--output {output} is not empty and holds no saved_model.pb: '
                          '--overwrite replaces an earlier export only')


def jax_functions(model, config, image_model=None, image_shapes=None):
  """{name: f(variables, input) → {output: float32 array}}: the model's embeddings of one
  modality, the input as the signature takes it (frames, images, the audio backbone's input,
  tokens). `image_model`: the deflated model (default `model`, which must be deflated then),
  its variables deflated from `variables` in the function when `image_shapes` are given."""

  def video(variables, frames):
    x = frames.astype(jnp.float32)
    if frames.dtype == jnp.uint8:
      x = x / 255.0
    x = augment.normalize(x, config.data.normalization)
    features, va, vat = model.apply(variables, x, method=model.embed_video)
    return {'features': features, 'S_va': va, 'S_vat': vat}

  def image(variables, images):
    if image_shapes is not None:
      variables = deflate.deflate_variables(variables, image_shapes)
    x = augment.normalize(images.astype(jnp.float32), config.data.normalization)
    net = image_model or model
    features, va, vat = net.apply(variables, x, method=net.embed_image)
    return {'features': features, 'S_va': va, 'S_vat': vat}

  def audio(variables, x):
    features, va, vat = model.apply(variables, x, method=model.embed_audio)
    out = {'features': features, 'S_va': va}
    if vat is not None:
      out['S_vat'] = vat
    return out

  def text(variables, tokens):
    return {'S_vat': model.apply(variables, tokens, method=model.embed_text)}

  return {'video': video, 'image': image, 'audio': audio, 'text': text}


def audio_input(waveform, c):
  """The audio backbone's input for a waveform [B, samples]: the pipeline's log-mel (or the
  waveform itself for `data.audio_format` 'waveform')."""
  if c.audio_format == 'waveform':
    return waveform
  return audio_ops.log_mel_spectrogram(
      waveform, sample_rate=c.audio_sample_rate, window=c.stft_window, hop=c.stft_hop,
      num_mel_bins=c.num_mel_bins, lower_hz=c.mel_lower_hz, upper_hz=c.mel_upper_hz,
      log_offset=c.log_offset)


def write_vocabulary(words, path):
  """The vocabulary asset: `word<TAB>id` for each word the tokenizer can produce (letters and
  digits, lower case), with its id in the training run. The others can never be looked up (and
  a tab in one would break the file's columns); the explicit ids keep the rest in place."""
  with open(path, 'w') as f:
    f.write(''.join(f'{w}\t{i}\n' for i, w in enumerate(words, start=2)
                    if re.fullmatch(TOKEN, w)))


class ExportedModel(tf.Module):
  """The SavedModel's root: the model's variables, the tokenizer with its vocabulary asset, and
  one tf.function per modality around the JAX function converted by jax2tf (StableHLO for
  `platforms`), whose variables are arguments, not constants in the serialised program."""

  def __init__(self, config, model, variables, words, vocab_file, platforms, image=(None, None)):
    super().__init__()
    d = self._data = config.data
    leaves, treedef = jax.tree_util.tree_flatten_with_path(variables)
    self._variables = [
        tf.Variable(np.asarray(leaf), trainable=False,
                    name=jax.tree_util.keystr(path, simple=True, separator='/'))
        for path, leaf in leaves]
    # Column 0 the word, column 1 its id (write_vocabulary), read when the SavedModel loads.
    vocabulary = tf.lookup.TextFileInitializer(tf.saved_model.Asset(vocab_file), tf.string, 0,
                                               tf.int32, 1, delimiter='\t')
    self._tokenizer = text_ops.Tokenizer(
        words, d.stop_words, d.max_words,
        ids=tf.lookup.StaticHashTable(vocabulary, text_ops.UNK_ID))

    def converted(fn):
      unflattened = lambda leaves, x: fn(jax.tree_util.tree_unflatten(treedef, leaves), x)
      return jax2tf.convert(unflattened, polymorphic_shapes=[None, 'b, ...'],
                            with_gradient=False, native_serialization_platforms=tuple(platforms))

    self._fns = {name: converted(fn)
                 for name, fn in jax_functions(model, config, *image).items()}
    # One tf.function per signature, each with its input signature: traced once (saving
    # traces a function without one again, and each trace lowers the model anew).
    frames = lambda dtype: tf.TensorSpec([None, d.num_frames, d.crop_size, d.crop_size, 3],
                                         dtype, name='frames')
    function = lambda fn, spec: tf.function(fn, input_signature=[spec], autograph=False)
    self.video = function(self._video, frames(tf.float32))
    self.video_uint8 = function(self._video, frames(tf.uint8))
    self.image = function(self._image, tf.TensorSpec([None, d.crop_size, d.crop_size, 3],
                                                     tf.float32, name='images'))
    self.audio = function(self._audio,
                          tf.TensorSpec([None, example_ops.num_audio_samples(d)], tf.float32,
                                        name='waveform'))
    self.text = function(self._text, tf.TensorSpec([None], tf.string, name='captions'))

  def _call(self, name, x):
    with jax.default_matmul_precision('float32'):  # Not TF32 or bfloat16 passes on GPUs / TPUs.
      return self._fns[name](list(self._variables), x)

  def _video(self, frames):
    frames = tf.ensure_shape(frames, self.video.input_signature[0].shape)  # Either dtype.
    if frames.dtype != tf.uint8:
      message = 'video: float frames must lie in [0, 1] (uint8 frames go to video_uint8)'
      with tf.control_dependencies([
          tf.debugging.assert_greater_equal(frames, 0.0, message=message),
          tf.debugging.assert_less_equal(frames, 1.0, message=message)]):
        frames = tf.identity(frames)
    return self._call('video', frames)

  def _image(self, images):
    images = tf.ensure_shape(images, self.image.input_signature[0].shape)
    message = 'image: images must lie in [0, 1]'
    with tf.control_dependencies([
        tf.debugging.assert_greater_equal(images, 0.0, message=message),
        tf.debugging.assert_less_equal(images, 1.0, message=message)]):
      return self._call('image', tf.identity(images))

  def _audio(self, waveform):
    waveform = tf.ensure_shape(waveform, self.audio.input_signature[0].shape)
    return self._call('audio', audio_input(waveform, self._data))

  def _text(self, captions):
    tokens = self._tokenizer(captions)
    out = self._call('text', tokens)
    out['has_words'] = tf.reduce_any(tf.not_equal(tokens, text_ops.PAD_ID), axis=1)
    return out

  def signatures(self):
    # The functions, not their concrete functions: tracing them outside tf.saved_model.save's
    # context, where they are traced again, would lower every model twice.
    return {name: getattr(self, name) for name in SIGNATURES}


def description(config, workdir, step, platforms):
  """What DIR/assets.extra/mmv_export.json records: the checkpoint and the inputs the model was
  trained on."""
  d, m = config.data, config.model
  return {
      'workdir': os.path.abspath(workdir), 'step': int(step), 'platforms': list(platforms),
      'model': {k: m[k] for k in ('video_backbone', 'audio_backbone', 'head', 'va_dim',
                                  'vat_dim')},
      'video': {'frames': d.num_frames, 'height': d.crop_size, 'width': d.crop_size,
                'frames_per_second': d.fps / d.frame_stride, 'normalization': d.normalization},
      'image': {'height': d.crop_size, 'width': d.crop_size, 'normalization': d.normalization,
                'deflation': ('deflated workdir (BN re-fitted)' if m.get('deflated', False)
                              else 'deflated in the graph (no BN re-fit)')},
      'audio': {'sample_rate': d.audio_sample_rate,
                'samples': example_ops.num_audio_samples(d), 'format': d.audio_format},
      'text': {'max_words': d.max_words, 'stop_words': list(d.stop_words)},
  }


def read_config(path, data_dir=None):
  """The model's config from `path`: a config.json, or a config file `FILE.py[:ARG]` (its
  get_config(ARG), as training's --config takes it); `data_dir` replaces data.data_dir (where
  the vocabulary is)."""
  if path.endswith('.json'):
    with open(path) as f:
      config = inference.config_from_dict(json.load(f))
  else:
    file, _, arg = path.partition(':')
    if not os.path.exists(file):
      raise FileNotFoundError(f'no config file {file}')
    root = os.path.dirname(os.path.dirname(os.path.abspath(file)))
    if root not in sys.path:  # Config files import their neighbours (`from configs import`).
      sys.path.insert(0, root)
    spec = importlib.util.spec_from_file_location('_export_config', file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(arg) if arg else module.get_config()
  if data_dir is not None:
    config.data.data_dir = data_dir
  return config


def export(workdir, output, *, step=None, overwrite=False, platforms=('cpu', 'cuda'),
           config=None):
  """Writes the SavedModel of checkpoint `step` (latest by default) of `workdir` to `output`;
  returns the step. `config`: the model's (default WORKDIR/config.json; an imported release
  has none)."""
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f'no workdir {workdir}')
  output = os.path.abspath(output)
  check_output(output, overwrite)
  config = export_config(config if config is not None else inference.read_run_config(workdir))
  if config.get('method', 'mmv') != 'mmv':
    raise ValueError(f'the export writes MMV\'s signatures (S_va, S_vat, text); this run trained '
                     f'method {config.method!r}: use mmv.inference to embed with it')
  vocab = pipeline.run_vocabulary(config.data, 'for the text signature')
  step = ckpt_lib.workdir_step(workdir, step)
  (model, variables, _), step = inference.restore(config, workdir, step)
  variables = jax.device_get(variables)
  words = text_ops.read_vocabulary(vocab)
  parent = os.path.dirname(output)
  os.makedirs(parent, exist_ok=True)
  temporary = tempfile.mkdtemp(prefix=f'.{os.path.basename(output)}.tmp-', dir=parent)
  try:
    vocab_file = os.path.join(temporary, VOCAB_ASSET)
    write_vocabulary(words, vocab_file)
    module = ExportedModel(config, model, variables, words, vocab_file, platforms,
                           image=image_model(config))
    saved = os.path.join(temporary, 'saved_model')
    tf.saved_model.save(module, saved, signatures=module.signatures())
    os.makedirs(os.path.join(saved, 'assets.extra'))
    with open(os.path.join(saved, INFO_PATH), 'w') as f:
      json.dump(description(config, workdir, step, platforms), f, indent=1)
    _replace(saved, output)
  finally:
    shutil.rmtree(temporary, ignore_errors=True)
  return step


def image_model(config):
  """(image model, the shapes of its variables) for the `image` signature of a video model,
  whose variables the signature deflates; (None, None) for a deflated model (its own)."""
  if config.model.get('deflated', False):
    return None, None
  image_config = inference.model_config(deflate.image_config(config))
  net = step_lib.create_model(image_config)
  return net, jax.eval_shape(lambda: step_lib.init_variables(jax.random.key(0), net,
                                                             image_config))


def _replace(source, output):
  """Renames `source` to `output`; an earlier export there is moved aside first and removed
  once the new one is in place."""
  if os.path.isdir(output) and os.listdir(output):
    aside = tempfile.mkdtemp(prefix=f'.{os.path.basename(output)}.old-',
                             dir=os.path.dirname(output))
    os.rename(output, os.path.join(aside, 'saved_model'))
    os.rename(source, output)
    shutil.rmtree(aside)
  else:
    os.rename(source, output)


def parse_args(argv):
  parser = argparse.ArgumentParser(prog='python -m mmv.tools.export', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--workdir', required=True,
                      help='Training workdir holding config.json and checkpoints/.')
  parser.add_argument('--step', type=int, help='Checkpoint step; the latest when left out.')
  parser.add_argument('--config', help='The model\'s config when WORKDIR has no config.json (an '
                      'imported release): a config file FILE.py[:ARG], e.g. configs/mmv_s3d.py, '
                      'or a config.json.')
  parser.add_argument('--data_dir', help='With --config: data.data_dir, where the vocabulary '
                      '(data.vocab) is.')
  parser.add_argument('--output', required=True, help='Directory of the SavedModel to write.')
  parser.add_argument('--overwrite', action='store_true',
                      help='Replace an earlier export in --output.')
  parser.add_argument('--platforms', default='cpu,cuda', type=_platforms,
                      help=f'Comma-separated platforms the SavedModel runs on, among {PLATFORMS}.')
  return parser.parse_args(argv)


def _platforms(value):
  platforms = tuple(p for p in value.split(',') if p)
  if not platforms or set(platforms) - set(PLATFORMS):
    raise argparse.ArgumentTypeError(f'{value!r}: choose among {PLATFORMS}')
  return platforms


def main(argv=None):
  args = parse_args(argv)
  ckpt_lib.start_reader()
  try:
    config = read_config(args.config, args.data_dir) if args.config else None
    step = export(args.workdir, args.output, step=args.step, overwrite=args.overwrite,
                  platforms=args.platforms, config=config)
  except (FileNotFoundError, FileExistsError, ckpt_lib.DamagedCheckpointError,
          ckpt_lib.IncompatibleCheckpointError) as e:
    raise SystemExit(f'error: {e}') from None
  print(f'wrote {args.output}: checkpoint {step} of {args.workdir}')


if __name__ == '__main__':
  main()
