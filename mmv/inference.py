"""Using a trained model: a checkpoint's embeddings of videos, sounds and sentences.

    from mmv import inference
    model = inference.load('runs/demo')                 # the latest checkpoint, float32
    videos = model.embed_videos(['cat.mp4', frames], clips=4)
    sounds = model.embed_audio(['bark.wav'])
    texts = model.embed_text(['a cat jumps on a table'])
    scores = texts.vat @ videos.vat.T                   # cosine similarities in S_vat
    photos = model.embed_images(['cat.jpg'])            # the deflated video tower

`load` restores only the model's variables (parameters and BatchNorm statistics, no optimiser
state) of a training run's workdir, or of one written by `python -m mmv.tools.import_deepmind`
(which has no config.json: pass its `config`), onto all local devices. This module is also
where the evaluation binary gets its checkpoint → embeddings code (`restore`, `Checkpoint`),
so a model embeds here exactly as it is evaluated.

Media files are decoded as the converter decodes them (`mmv.media_inputs`: PyAV, at the
model's frame rate `data.fps`, the short side resized to `short_side`, audio at
`data.audio_sample_rate`) and made into the record the converter writes
(`clip_records.make_example`); the records go through
the evaluation pipeline (`mmv.evaluators.features.extract`: clip sampling, central crop,
log-mel spectrogram, sharding over the devices). Arrays stand for decoded media: uint8 frames
[T, H, W, 3] at `data.fps`, or float32 mono waveforms at `data.audio_sample_rate`. Sentences are
tokenised with the run's vocabulary and stop words.

Images (files, uint8 arrays [H, W, 3]) go through the pipeline as 1-frame records into the
deflated video tower: a `python -m mmv.tools.deflate` workdir's (BN re-fitted), or the video
model's deflated on loading (no re-fit); see `mmv.inference_images`.

Each video or sound gives `clips` evenly spaced clips of the model's clip length (as the
retrieval protocol does); its embedding in a space is the mean of its unit clip embeddings,
normalised again (`retrieval.average_clips`).
"""

import copy
import dataclasses
import functools
import json
import os
import tempfile
from typing import Optional

import jax
import ml_collections
import numpy as np
import tensorflow as tf

from mmv import checkpoint as ckpt_lib
from mmv import inference_images
from mmv import media_inputs
from mmv import methods
from mmv import sharding as shard_lib
from mmv import train_step as step_lib
from mmv.benchmarks import protocols
from mmv.ingest import clip_records
from mmv.data import format as fmt
from mmv.ingest import media
from mmv.data import pipeline
from mmv.data import text as text_ops
from mmv.evaluators import features as features_lib
from mmv.evaluators import retrieval
from mmv.models import deflate

DTYPES = ('float32', 'bfloat16')
# The record split the inputs of one call are written to, in a temporary directory.
_SPLIT = 'inputs'


def _tuples(value):
  """JSON lists back to the tuples configs hold."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def config_from_dict(stored):
  """A locked config (typos are errors) from its JSON form."""
  stored = _tuples(stored)
  config = ml_collections.ConfigDict(stored)
  config.lock()
  return config


def read_run_config(workdir):
  """The config a training run wrote to WORKDIR/config.json, locked (typos are errors)."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'no {path}: the training run writes it when it starts; pass '
                            '--config to use the checkpoints without it')
  with open(path) as f:
    stored = json.load(f)
  if not any(isinstance(v, dict) for v in stored.get('eval', {}).values()):
    # Written before the protocols were per benchmark: its flat `eval` section held the
    # settings of one protocol for all; evaluate it with today's per-benchmark defaults.
    print(f'{path} predates the per-benchmark evaluation protocols; using their defaults '
          '(config.eval.NAME)', flush=True)
    stored['eval'] = protocols.eval_config().to_dict()
  return config_from_dict(stored)


def model_config(config):
  """`config` with the model computing in `eval.dtype`: what evaluation runs."""
  c = copy.deepcopy(config)
  c.model.dtype = config.eval.dtype
  return c


def abstract_variables(config, model, mesh):
  """ShapeDtypeStructs of {'params', 'batch_stats'} on `mesh`: parameters placed by
  `config.mesh.param_rules`, BatchNorm statistics replicated. No optimiser is built."""
  shapes = jax.eval_shape(lambda rng: step_lib.init_variables(rng, model, config),
                          jax.random.key(0))
  shardings = {'params': shard_lib.param_shardings(shapes['params'], mesh,
                                                   config.mesh.param_rules),
               'batch_stats': jax.tree.map(lambda _: shard_lib.replicated(mesh),
                                           shapes.get('batch_stats', {}))}
  variables = {'params': shapes['params'], 'batch_stats': shapes.get('batch_stats', {})}
  return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                      variables, shardings)


def restore(config, workdir, step=None):
  """(model, variables, mesh) of checkpoint `step` (latest by default) in `workdir`, and the
  step. Only the model's variables are read (no optimiser state), onto the shardings of
  `config.mesh` (which need not be the training run's); the model computes in `eval.dtype`.
  A damaged checkpoint raises `ckpt_lib.DamagedCheckpointError` naming it and the other steps;
  nothing is moved (the evaluation only reads the run's directory)."""
  config = model_config(config)
  mesh = shard_lib.make_mesh(config.mesh)
  model = step_lib.create_model(config)
  abstract = abstract_variables(config, model, mesh)
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), read_only=True)
  try:
    variables, meta = checkpointer.restore_variables(
        abstract, signature=ckpt_lib.variable_signature(abstract), step=step)
  finally:
    checkpointer.close()
  return (model, variables, mesh), int(meta['step'])


class Checkpoint:
  """A checkpoint's model, variables and mesh, restored when first needed, and its jitted
  functions, compiled once for all the inputs embedded with it."""

  def __init__(self, config, workdir, step):
    self._config = config
    self._restore = functools.partial(restore, config, workdir, step)
    self._embed_fns = {}

  @functools.cached_property
  def restored(self):
    return self._restore()[0]  # (model, variables, mesh)

  @functools.cached_property
  def image_restored(self):
    """(image model, variables, mesh): the deflated model's own, or the video model's
    variables deflated (`mmv.models.deflate`, no BN re-fit)."""
    if inference_images.refitted(self._config):
      return self.restored
    _, variables, mesh = self.restored
    config = model_config(deflate.image_config(self._config))
    model = step_lib.create_model(config)
    return model, deflate.placed_variables(
        variables, abstract_variables(config, model, mesh)), mesh

  def embed_fn(self, modality, with_text, spaces=False):
    """Jitted embedding of a batch; 'image': `image_restored`'s of 1-frame clips (as video)."""
    key = (modality, with_text, spaces)
    if key not in self._embed_fns:
      model = self.image_restored[0] if modality == 'image' else self.restored[0]
      self._embed_fns[key] = features_lib.make_embed_fn(
          model, 'video' if modality == 'image' else modality, with_text, spaces)
    return self._embed_fns[key]

  @functools.cached_property
  def encode_text(self):
    model = self.restored[0]
    return jax.jit(functools.partial(model.apply, method=model.embed_text))


def text_tokens(data_config, texts):
  """Token ids [N, max_words] of `texts` with the vocabulary and stop words of `data_config`
  (its `vocab` a path), and the texts left without a word once the stop words are dropped
  (they would embed as padding alone)."""
  d = data_config
  tokenizer = text_ops.Tokenizer(text_ops.read_vocabulary(d.vocab), d.stop_words, d.max_words)
  tokens = tokenizer(tf.constant(list(texts), tf.string))
  real = set(text_ops.with_words(tokens).numpy().tolist())
  return tokens.numpy(), [t for i, t in enumerate(texts) if i not in real]


@dataclasses.dataclass(frozen=True)
class Embeddings:
  """What a model makes of N inputs, in their order.

  features    float32 [N, clips, D]  the backbone's pooled features per clip (None for text)
  va          float32 [N, va]        unit embeddings in S_va, clips averaged (None for text)
  vat         float32 [N, vat]       unit embeddings in S_vat, clips averaged (None for audio
                                     through a `disjoint` head, which has no way into S_vat)
  clip_times  float32 [N, clips, 2]  (start, end) seconds of each clip in its input (None for
                                     text); a clip longer than its input repeats the input
  """
  features: Optional[np.ndarray]
  va: Optional[np.ndarray]
  vat: Optional[np.ndarray]
  clip_times: Optional[np.ndarray] = None


class Model:
  """A restored checkpoint that embeds videos, sounds and sentences (see the module doc)."""

  def __init__(self, config, workdir, step, *, short_side=None):
    self.config, self.workdir, self.step = config, workdir, step
    self.data = config.data
    self.inputs = media_inputs.Inputs(config.data, short_side)
    self.short_side = self.inputs.short_side
    self.checkpoint = Checkpoint(config, workdir, step)

  @property
  def devices(self):
    return self.checkpoint.restored[2].devices.size

  def identity(self):
    """What tells this model's embeddings from another's, JSON-ready: the checkpoint, the model
    as it computes, and the input settings."""
    path = os.path.abspath(self.workdir)
    return json.loads(json.dumps({
        'workdir': path, 'step': self.step,
        'model': model_config(self.config).model.to_dict(),
        'data': {k: self.data[k] for k in (
            'fps', 'num_frames', 'frame_stride', 'crop_size', 'min_resize', 'normalization',
            'audio_format', 'audio_sample_rate', 'stft_window', 'stft_hop', 'num_mel_bins',
            'mel_lower_hz', 'mel_upper_hz', 'log_offset', 'max_words', 'stop_words', 'vocab')},
        'short_side': self.short_side}))

  @property
  def image_tower(self):
    """What embeds images: a deflated workdir's (BN re-fitted) or the video model's."""
    return inference_images.image_tower(self.config)

  # Embedding.

  def data_config(self, modality, clips, data_dir):
    """The run's data config reading the inputs' records in `data_dir` as evaluation reads
    test videos: `clips` evenly spaced clips, central crop, no augmentation."""
    c = copy.deepcopy(self.data)
    for k, v in dict(data_dir=data_dir, mixture=(), test_split=_SPLIT, with_names=True,
                     label_format='index', num_classes=0, modalities=(modality,),
                     num_test_clips=clips, random_flip=False, color_augment=False,
                     scale_jitter=protocols.NO_AUGMENTATION, strict=False).items():
      c[k] = v
    return c

  def videos_per_batch(self, batch_size, clips, inputs):
    """As the evaluation counts them: clips per batch (default eval.batch_size), of whole
    inputs, over all devices."""
    return features_lib.videos_per_batch(batch_size or self.config.eval.batch_size, clips,
                                         self.devices, inputs)

  def extract(self, clips, data, embed, restored, batch_size, fps):
    """Per-clip arrays of `clips` (`media.Clip`s) through the evaluation pipeline, each clip
    the record the converter writes (at `fps`), the records one temporary split, and the
    indices of the clips the pipeline cannot read."""
    _, variables, mesh = restored
    with tempfile.TemporaryDirectory(prefix='mmv-inputs-') as tmp:
      path = os.path.join(tmp, fmt.shard_name(_SPLIT, 0, 1))
      with tf.io.TFRecordWriter(path) as writer:
        for i, clip in enumerate(clips):
          spec = media.ClipSpec(name=str(i), path=None, start=clip.start, end=clip.end)
          example = clip_records.make_example(spec, clip, {}, fps=fps,
                                              sample_rate=self.data.audio_sample_rate)
          writer.write(example.SerializeToString(deterministic=True))
      data.data_dir = tmp
      arrays, _ = features_lib.extract(data, _SPLIT, embed, variables, mesh,
                                       batch_size=batch_size)
    rows = {int(name): i for i, name in enumerate(arrays.get('filename', []))}
    read = [i for i in range(len(clips)) if i in rows]
    per_clip = {k: np.asarray(v)[[rows[i] for i in read]] for k, v in arrays.items()}
    return per_clip, read, [i for i in range(len(clips)) if i not in rows]

  def embed_clips(self, clips, modality, *, num_clips=4, batch_size=None):
    """(`Embeddings` of the decoded `clips` (`media.Clip`s) that the pipeline reads, the
    indices of those it cannot), in `modality`, through the evaluation pipeline: each clip
    becomes the record the converter writes, the records one temporary split."""
    media_inputs.check_modality(modality)
    if num_clips < 1:
      raise ValueError(f'clips must be at least 1, got {num_clips}')
    if not clips:
      raise ValueError('nothing to embed: no inputs')
    batch_size = self.videos_per_batch(batch_size, num_clips, len(clips))
    data = self.data_config(modality, num_clips, '')
    embed = self.checkpoint.embed_fn(modality, with_text=False, spaces=True)
    per_clip, read, failed = self.extract(clips, data, embed, self.checkpoint.restored,
                                           batch_size, self.data.fps)
    space = lambda k: retrieval.average_clips(per_clip[k]) if k in per_clip else None
    if not read:
      return None, failed
    times = np.stack([self.inputs.clip_times(clips[i], modality, num_clips) for i in read])
    if modality == 'video':
      return Embeddings(per_clip['features'], space('video_va'), space('video'), times), failed
    return Embeddings(per_clip['features'], space('audio_va'), space('audio_vat'), times), failed

  def embed_images(self, inputs, *, batch_size=None):
    """`Embeddings` (features [N, 1, D], unit va and vat, no clip_times) of image files or
    uint8 arrays [H, W, 3], by the deflated video tower (see the module doc); an unreadable
    image is an error naming it. `batch_size`: images per batch (default eval.batch_size)."""
    self._check_tower('video')
    per_clip = inference_images.embed(self, inputs, batch_size)
    unit = lambda k: retrieval.average_clips(per_clip[k]) if k in per_clip else None
    return Embeddings(per_clip['features'], unit('video_va'), unit('video'))

  def _embed_all(self, inputs, modality, clips, batch_size):
    embeddings, failed = self.embed_clips(self.inputs.clips(inputs, modality), modality,
                                          num_clips=clips, batch_size=batch_size)
    if failed:  # The pipeline decodes what the converter wrote: a record of its own fails.
      raise media_inputs.UnreadableInput(f'{len(failed)} inputs could not be read by the '
                                         f'pipeline (input {failed[0]} first)')
    return embeddings

  def _check_tower(self, modality):
    method = self.config.get('method', 'mmv')
    if modality not in methods.get(self.config).TOWERS:
      raise ValueError(f'the model (method {method!r}) has no {modality} tower')

  def embed_videos(self, inputs, clips=4, *, batch_size=None):
    """`Embeddings` of video files or uint8 frame arrays [T, H, W, 3] at `data.fps`;
    `batch_size`: clips per batch (default `eval.batch_size`), of whole inputs."""
    self._check_tower('video')
    return self._embed_all(inputs, 'video', clips, batch_size)

  def embed_audio(self, inputs, clips=4, *, batch_size=None):
    """`Embeddings` of sound (or video) files' soundtracks or float32 waveforms at the sample
    rate."""
    self._check_tower('audio')
    return self._embed_all(inputs, 'audio', clips, batch_size)

  def embed_text(self, texts):
    """`Embeddings` (`vat` only) of sentences; one left without a word once the stop words are
    dropped is an error naming it."""
    self._check_tower('text')
    if isinstance(texts, str):
      texts = [texts]
    if not texts:
      raise ValueError('nothing to embed: no sentences')
    tokens, empty = text_tokens(self.data, texts)
    if empty:
      raise ValueError(f'{empty[0]!r} has no word left once the stop words are dropped '
                       f'({len(empty)} such sentences): say what to look for')
    text = self.checkpoint.encode_text(self.checkpoint.restored[1], tokens)
    return Embeddings(None, None, retrieval.l2_normalize(np.asarray(text)))


def load(workdir, step=None, config=None, *, dtype='float32', short_side=None):
  """The `Model` of checkpoint `step` (default: the latest) in `workdir`, computing in `dtype`.

  `config`: the model's config (a ConfigDict, or the path of a config.json); default the run's
  WORKDIR/config.json. Nothing is read until the first embedding but the config and the list
  of checkpoints; errors name what is missing.
  """
  if dtype not in DTYPES:
    raise ValueError(f'dtype must be one of {DTYPES}, got {dtype!r}')
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f'no workdir {workdir}')
  if config is None:
    config = read_run_config(workdir)
  elif isinstance(config, (str, os.PathLike)):
    with open(config) as f:
      config = config_from_dict(json.load(f))
  config = copy.deepcopy(config)
  config.unlock()
  config.data.vocab = pipeline.run_vocabulary(config.data, 'to encode text')
  config.eval.dtype = dtype
  config.lock()
  step = ckpt_lib.workdir_step(workdir, step)
  return Model(config, workdir, step, short_side=short_side)
