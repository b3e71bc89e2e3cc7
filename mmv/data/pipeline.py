"""The tf.data input pipeline: DMVR shards → per-process host batches → global device batches.

Per example, on the host: parse the record, draw the example's randomness, decode the sampled
frames' crops (uint8), cut the audio windows aligned with the frames in time, pick and
tokenise captions, encode labels. Batches go to the devices as global jax.Arrays, where
`mmv.data.augment` turns the uint8 crops into float clips (`global_batches`).

Every random choice (clip offset, crop, flip, colour, captions) is a stateless function of
(seed, source, process, position of the record), the position being (part, index within
the part) of `mmv.data.records`; one clip offset drives the frames, the audio window and the
nearest captions, so the modalities of an example stay aligned.

The model's batch (after `global_batches`), per clip:
  video      float32 [T, crop, crop, 3] in [0, 1] (or normalised, `data.normalization`)
  audio      float32 [frames, mel, 1] log-mel, or [samples] waveform (`data.audio_format`)
  audio_mask float32 []  1 if the clip has a waveform
  text       int32   [K, max_words] token ids, 0 = padding
  text_mask  float32 [K] 1 for a real caption (one with a word left after dropping stop words)
  label      int32 [] (−1 if none), or float32 [classes] one-/multi-hot (`data.label_format`)
  mask       float32 []  1 for a real example (0 for evaluation padding)
  filename, label_name   bytes, host-side only, with `data.with_names`
Modalities left out of `data.modalities` have no keys. In evaluation each example gives
`data.num_test_clips` consecutive rows (its clips folded into the batch).
"""

import functools
import os
import queue
import re
import threading

import jax
import numpy as np
import tensorflow as tf

from mmv.data import audio as audio_ops
from mmv.data import augment
from mmv.data import format as fmt
from mmv.data import labels as label_ops
from mmv.data import records
from mmv.data import text as text_ops
from mmv.data import video as video_ops

MODALITIES = ('video', 'audio', 'text')
AUDIO_FORMATS = ('log_mel', 'waveform')
# Per example, removed by `mmv.data.stream`: the record's position and its stream element number,
# and the unreadable shard tails met so far (`mmv.data.records`).
BOOKKEEPING = ('_part', '_index', '_seq', '_tails', '_last_tail')


def vocab_path(c):
  return os.path.join(c.data_dir, c.vocab)


def make_tokenizer(c):
  if 'text' not in c.modalities:
    return None
  return text_ops.Tokenizer(text_ops.read_vocabulary(vocab_path(c)), c.stop_words, c.max_words)


def clip_seconds(c):
  return c.num_frames * c.frame_stride / c.fps


def num_audio_samples(c):
  return int(round(clip_seconds(c) * c.audio_sample_rate))


def check_config(c):
  unknown = set(c.modalities) - set(MODALITIES)
  if unknown or not {'video', 'audio'} & set(c.modalities):
    raise ValueError(f'data.modalities must be among {MODALITIES} and include video or audio, '
                     f'got {tuple(c.modalities)}')
  if c.audio_format not in AUDIO_FORMATS:
    raise ValueError(f'data.audio_format must be one of {AUDIO_FORMATS}, got {c.audio_format!r}')
  if c.normalization not in augment.NORMALIZATIONS:
    raise ValueError(f'data.normalization must be one of {augment.NORMALIZATIONS}, '
                     f'got {c.normalization!r}')
  label_ops.check_format(c.label_format, c.num_classes)
  if clip_offset_rule(c) not in video_ops.OFFSET_RULES:
    raise ValueError(f'data.clip_offsets must be one of {video_ops.OFFSET_RULES}, got '
                     f'{clip_offset_rule(c)!r}')


def clip_offset_rule(c):
  """How clips start (`video.clip_offsets`): `data.clip_offsets`, which the evaluation of a
  benchmark sets from its protocol; 'mmv' where a config has no such field."""
  return c.get('clip_offsets', 'mmv')


def first_items(c, available, rate):
  """Of `available` frames (or samples) at `rate` per second, those clips are drawn from:
  the first `data.max_seconds` (evaluation's protocols set it; all where 0 or absent), as a
  decoder stopping there would give them."""
  max_seconds = c.get('max_seconds', 0.0)
  if not max_seconds:
    return available
  # Items k at k / rate < max_seconds; the margin keeps a product like 20 x 25 at 500.
  limit = tf.cast(tf.math.ceil(max_seconds * tf.cast(rate, tf.float32) - 1e-3), available.dtype)
  return tf.minimum(available, tf.maximum(limit, 1))


def output_shapes(c):
  """Per-clip shapes of the model's batch (after `global_batches`) for data config `c`."""
  shapes = {'label': () if c.label_format == 'index' else (c.num_classes,), 'mask': ()}
  if 'video' in c.modalities:
    shapes['video'] = (c.num_frames, c.crop_size, c.crop_size, 3)
  if 'audio' in c.modalities:
    samples = num_audio_samples(c)
    frames = audio_ops.num_spectrogram_frames(samples, c.stft_window, c.stft_hop)
    shapes['audio'] = ((frames, c.num_mel_bins, 1) if c.audio_format == 'log_mel'
                       else (samples,))
    shapes['audio_mask'] = ()
  if 'text' in c.modalities:
    shapes['text'] = (c.num_captions, c.max_words)
    shapes['text_mask'] = (c.num_captions,)
  return shapes


def _first(strings):
  return tf.concat([strings, ['']], 0)[0]


def _parse(record, modalities):
  context = {
      fmt.LABEL_INDEX: tf.io.VarLenFeature(tf.int64),
      fmt.LABEL_TEXT: tf.io.VarLenFeature(tf.string),
      fmt.FILENAME: tf.io.VarLenFeature(tf.string),
      fmt.START_US: tf.io.FixedLenFeature([], tf.int64, 0),
      fmt.FPS: tf.io.FixedLenFeature([], tf.float32, fmt.DEFAULT_FPS),
      fmt.SAMPLE_RATE: tf.io.FixedLenFeature([], tf.float32, fmt.DEFAULT_SAMPLE_RATE),
  }
  if 'text' in modalities:
    context.update({fmt.CAPTION: tf.io.VarLenFeature(tf.string),
                    fmt.CAPTION_START_US: tf.io.VarLenFeature(tf.int64),
                    fmt.CAPTION_END_US: tf.io.VarLenFeature(tf.int64)})
  sequence = {}
  if 'video' in modalities:
    sequence[fmt.IMAGE] = tf.io.FixedLenSequenceFeature([], tf.string, allow_missing=True)
  if 'audio' in modalities:
    # Ragged: the samples as they are (a VarLenFeature would add two int64 indices each).
    sequence[fmt.WAVEFORM] = tf.io.RaggedFeature(tf.float32)
  ctx, seq = tf.io.parse_single_sequence_example(record, context, sequence)
  raw = {k: tf.sparse.to_dense(v) if isinstance(v, tf.sparse.SparseTensor) else v
         for k, v in {**ctx, **seq}.items()}
  if fmt.WAVEFORM in raw:
    raw[fmt.WAVEFORM] = raw[fmt.WAVEFORM].flat_values
  return raw


def make_example_fn(c, tokenizer, *, train, seed):
  """The per-example function: a record-stream element → host example (rows = clips)."""
  check_config(c)
  clips = 1 if train else c.num_test_clips
  duration_s = clip_seconds(c)
  window = video_ops.window_shape(c.crop_size, tuple(c.scale_jitter))
  rule = clip_offset_rule(c)

  def video(raw, keys, out):
    num_frames = tf.shape(raw[fmt.IMAGE])[0]
    tf.debugging.assert_positive(num_frames, message='the record has no frames (image/encoded)')
    num_frames = first_items(c, num_frames, raw[fmt.FPS])
    span = (c.num_frames - 1) * c.frame_stride + 1
    offsets = video_ops.clip_offsets(num_frames, span, num_clips=clips, train=train, seed=keys[0],
                                     rule=rule, stride=c.frame_stride)
    indices = video_ops.frame_indices(offsets, c.num_frames, c.frame_stride, num_frames)
    jpegs = tf.gather(raw[fmt.IMAGE], tf.reshape(indices, [-1]))
    shape = tf.io.extract_jpeg_shape(jpegs[0])
    box = video_ops.crop_box(shape[0], shape[1], crop_size=c.crop_size, train=train,
                             seed=keys[1], scale_jitter=tuple(c.scale_jitter),
                             min_resize=c.min_resize)
    frames, crop = video_ops.decode_crop(jpegs, box, window)
    out['frames'] = tf.reshape(frames, tf.concat([[clips, c.num_frames], tf.shape(frames)[1:]], 0))
    out['frames_box'] = tf.tile(crop[None], [clips, 1])
    if train and c.random_flip:
      out['frames_flip'] = video_ops.flip_draw(keys[2])[None]
    if train and c.color_augment:
      out['frames_colour'] = video_ops.colour_draw(keys[3])[None]
    return tf.cast(offsets, tf.float32) / raw[fmt.FPS]

  def audio(raw, starts_s, out):
    waveform = raw[fmt.WAVEFORM]
    waves = audio_ops.windows(waveform, starts_s, rate_in=raw[fmt.SAMPLE_RATE],
                              rate_out=c.audio_sample_rate, num_samples=num_audio_samples(c))
    if c.audio_format == 'log_mel':
      waves = audio_ops.log_mel_spectrogram(
          waves, sample_rate=c.audio_sample_rate, window=c.stft_window, hop=c.stft_hop,
          num_mel_bins=c.num_mel_bins, lower_hz=c.mel_lower_hz, upper_hz=c.mel_upper_hz,
          log_offset=c.log_offset)
    out['audio'] = waves
    out['audio_mask'] = tf.fill([clips], tf.cast(tf.size(waveform) > 0, tf.float32))

  def audio_only_starts(raw, keys):
    rate = raw[fmt.SAMPLE_RATE]
    span = tf.cast(tf.round(duration_s * rate), tf.int32)
    available = first_items(c, tf.size(raw[fmt.WAVEFORM]), rate)
    offsets = video_ops.clip_offsets(available, span, num_clips=clips, train=train,
                                     seed=keys[0], rule=rule)
    return tf.cast(offsets, tf.float32) / rate

  def text(raw, starts_s, keys, out):
    stored = tf.shape(raw[fmt.CAPTION])[0]
    timed = tf.equal(tf.size(raw[fmt.CAPTION_START_US]), stored) & tf.equal(
        tf.size(raw[fmt.CAPTION_END_US]), stored)
    # Captions left without words (stop words only) are dropped before choosing, so they are
    # neither drawn nor nearest: K are chosen among the real ones, and none left means no text.
    tokens = tokenizer(raw[fmt.CAPTION])
    real = text_ops.with_words(tokens)
    n = tf.size(real)
    k = c.num_captions
    centres_us = raw[fmt.START_US] + tf.cast((starts_s + duration_s / 2) * 1e6, tf.int64)

    def nearest():
      return text_ops.nearest_captions(tf.gather(raw[fmt.CAPTION_START_US], real),
                                       tf.gather(raw[fmt.CAPTION_END_US], real), centres_us, k)

    def untimed():
      indices, mask = text_ops.choose_captions(n, k, train=train, seed=keys[4])
      return tf.tile(indices[None], [clips, 1]), tf.tile(mask[None], [clips, 1])

    indices, mask = tf.cond((n > 0) & timed, nearest, untimed)
    # A row of padding for a clip without text (its indices are 0, its mask 0).
    rows = tf.concat([tf.gather(tokens, real), tf.zeros([1, c.max_words], tokens.dtype)], 0)
    out['text'] = tf.reshape(tf.gather(rows, tf.reshape(indices, [-1])), [clips, k, c.max_words])
    out['text_mask'] = tf.ensure_shape(mask, [clips, k])

  def fn(element):
    tf.debugging.assert_equal(element['damaged'], False,
                              message='the shard ends early here (truncated or corrupt)')
    raw = _parse(element['record'], c.modalities)
    key = tf.constant([seed, 0], tf.int64)
    for data in (element['part'], element['index']):
      key = tf.random.experimental.stateless_fold_in(key, data)
    keys = tf.random.experimental.stateless_split(key, 5)
    out = {}
    if 'video' in c.modalities:
      starts_s = video(raw, keys, out)
    else:
      starts_s = audio_only_starts(raw, keys)
    if 'audio' in c.modalities:
      audio(raw, starts_s, out)
    if 'text' in c.modalities:
      text(raw, starts_s, keys, out)
    label = label_ops.encode(raw[fmt.LABEL_INDEX], c.label_format, c.num_classes)
    out['label'] = tf.repeat(label[None], clips, axis=0)
    out['mask'] = tf.ones([clips])
    if c.with_names:
      out['filename'] = tf.fill([clips], _first(raw[fmt.FILENAME]))
      out['label_name'] = tf.fill([clips], _first(raw[fmt.LABEL_TEXT]))
    out.update(_part=element['part'], _index=element['index'], _seq=element['seq'],
               _tails=element['tails'], _last_tail=element['last_tail'])
    return out

  # No Python control flow depends on tensors here: tracing without AutoGraph is faster.
  return tf.autograph.experimental.do_not_convert(fn)


def _fold_clips(batch):
  """[examples, clips, ...] → [examples · clips, ...]: each example's clips consecutive."""
  return {k: v if k in BOOKKEEPING else
          tf.reshape(v, tf.concat([[-1], tf.shape(v)[2:]], 0)) for k, v in batch.items()}


def source_dataset(c, files, *, batch_size, train, seed, tokenizer, start=(0, 0),
                   augment=None):
  """Host batches of `batch_size` examples of `files`, from position `start`.

  Records that fail (see `mmv.data.stream` for how they are counted) are dropped here;
  training repeats forever and drops the last partial batch, evaluation reads once. Each
  clip's crop is padded to the fixed buffer (`video.window_shape`) as it is copied into the batch.
  `augment` (default: `train`) makes examples as in training (one clip, random offset, crop,
  flip and colour); with `train=False` that is one augmented pass over `files` in order.
  """
  augment = train if augment is None else augment
  stream = records.record_stream(files, train=train, seed=seed,
                                 shuffle_buffer=c.shuffle_buffer, start=start)
  ds = stream.map(make_example_fn(c, tokenizer, train=augment, seed=seed),
                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).ignore_errors()
  shapes = {k: spec.shape for k, spec in ds.element_spec.items()}
  if 'frames' in shapes:
    window = video_ops.window_shape(c.crop_size, tuple(c.scale_jitter))
    shapes['frames'] = shapes['frames'][:2].concatenate(window + (3,))
  ds = ds.padded_batch(batch_size, padded_shapes=shapes, drop_remainder=train)
  return ds.map(_fold_clips)


def describe_record(c, files, position, *, train, seed, tokenizer, augment=None):
  """'FILE (record N): what fails' for the element at `position` of the record stream."""
  augment = train if augment is None else augment
  element = next(iter(records.record_stream(files, train=train, seed=seed,
                                            shuffle_buffer=c.shuffle_buffer, start=position)))
  where = f'{element["file"].numpy().decode()} (record {int(element["record_number"])})'
  try:  # Eagerly, so the error is the failing op's own message.
    make_example_fn(c, tokenizer, train=augment, seed=seed)(element)
  except tf.errors.OpError as e:
    message = re.sub(r'\{\{function_node [^}]*\}\}\s*', '', e.message).split(' [Op:')[0]
    return f'{where}: {message.strip().splitlines()[0]}'
  return where


def pad_batch(batch, rows):
  """Pads a smaller batch to `rows` rows with zeros (mask 0)."""
  n = batch['mask'].shape[0]
  if n == rows:
    return batch
  return {k: np.concatenate([v, np.zeros((rows - n,) + v.shape[1:], v.dtype)])
          for k, v in batch.items()}


def global_batches(local_batches, sharding, c, prefetch=2):
  """Per-process host batches → global batches on `sharding`, as the model takes them.

  A background thread stays `prefetch` batches ahead, so host-to-device copies and the
  device-side video ops overlap the train step. Each process passes its own batches; the
  global batch is their concatenation. String keys (`with_names`) stay host-side numpy.
  """
  finish = jax.jit(functools.partial(augment.finish_batch, c=c), out_shardings=sharding)
  q = queue.Queue(maxsize=prefetch)
  done = object()

  def to_device(batch):
    names = {k: v for k, v in batch.items() if v.dtype == object}
    arrays = {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
              for k, v in batch.items() if k not in names}
    return {**finish(arrays), **names}

  def producer():
    try:
      for batch in local_batches:
        q.put(to_device(batch))
    except Exception as e:  # Re-raised in the consumer.
      q.put(e)
      return
    q.put(done)

  threading.Thread(target=producer, daemon=True).start()
  while True:
    item = q.get()
    if item is done:
      return
    if isinstance(item, Exception):
      raise item
    yield item
