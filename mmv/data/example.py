"""The per-example function of the input pipeline: a record → the host example (the batch it
makes: `mmv.data.pipeline`).

Per example: parse the record, draw the example's randomness, decode the sampled frames' crops
(uint8), cut the audio windows aligned with the frames in time, pick and tokenise captions,
encode labels; in training, the same for each extra view (`mmv.data.views`), and with
`data.with_keys` the record's key (`mmv.data.keys`).

Every random choice is a stateless function of the example's key, itself drawn from (seed,
position of the record): the main clip's draws come from the key split in 5 (offset, crop,
flip, colour, captions), a view's from the key folded with its name then split in 4 (offset,
crop, flip, colour), so adding a view leaves the main clip's draws, and the other views', as
they were.
"""

import zlib

import tensorflow as tf

from mmv.data import audio as audio_ops
from mmv.data import augment
from mmv.data import format as fmt
from mmv.data import keys as key_ops
from mmv.data import labels as label_ops
from mmv.data import text as text_ops
from mmv.data import video as video_ops
from mmv.data import views as view_ops

MODALITIES = ('video', 'audio', 'text')
AUDIO_FORMATS = ('log_mel', 'waveform')


def clip_seconds(c):
  return c.num_frames * c.frame_stride / c.fps


def num_audio_samples(c, seconds=None):
  """Audio samples of a clip of `seconds` (default the main clip's, `clip_seconds`)."""
  seconds = clip_seconds(c) if seconds is None else seconds
  return int(round(seconds * c.audio_sample_rate))


def view_seconds(c, view):
  return view.num_frames * view.frame_stride / c.fps


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
  if crop_position(c) not in video_ops.CROP_POSITIONS:
    raise ValueError(f'data.crop_position must be one of {video_ops.CROP_POSITIONS}, got '
                     f'{crop_position(c)!r}')
  view_ops.parse(c)


def clip_offset_rule(c):
  """How clips start (`video.clip_offsets`): `data.clip_offsets`, which the evaluation of a
  benchmark sets from its protocol; 'mmv' where a config has no such field."""
  return c.get('clip_offsets', 'mmv')


def crop_position(c):
  """Where evaluation crops lie (`video.crop_box`): `data.crop_position`, which the test of a
  fine-tuned model sets for each of its spatial crops; the centre where a config has no such
  field."""
  return c.get('crop_position', 'centre')


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
    sequence[fmt.WAVEFORM_INT16] = tf.io.FixedLenSequenceFeature([], tf.string,
                                                                 allow_missing=True)
  ctx, seq = tf.io.parse_single_sequence_example(record, context, sequence)
  raw = {k: tf.sparse.to_dense(v) if isinstance(v, tf.sparse.SparseTensor) else v
         for k, v in {**ctx, **seq}.items()}
  if fmt.WAVEFORM in raw:
    # A record holds one of the two formats (the other reads empty): float, or 16-bit PCM.
    pcm = tf.reshape(tf.io.decode_raw(raw.pop(fmt.WAVEFORM_INT16), tf.int16,
                                      little_endian=True), [-1])
    raw[fmt.WAVEFORM] = tf.concat([raw[fmt.WAVEFORM].flat_values,
                                   tf.cast(pcm, tf.float32) / fmt.INT16_SCALE], 0)
  return raw


def _view_salt(view):
  """A view's own number to fold into the example's key: its draws follow its name."""
  return zlib.crc32(f'view:{view.name}'.encode()) & 0x7FFFFFFF


def make_example_fn(c, tokenizer, *, train, seed, views=(), key_table=None):
  """The per-example function: a record-stream element → host example (rows = clips).

  `views` (`mmv.data.views.parse`; training only) adds each view's crops and audio;
  `key_table` (`mmv.data.keys.label_table`) adds `pseudo_label`.
  """
  check_config(c)
  if views and not train:
    raise ValueError('extra views are read in training only (one clip per example)')
  clips = 1 if train else c.num_test_clips
  duration_s = clip_seconds(c)
  rule = clip_offset_rule(c)
  with_keys = c.get('with_keys', False)

  def available_frames(raw):
    num_frames = tf.shape(raw[fmt.IMAGE])[0]
    tf.debugging.assert_positive(num_frames, message='the record has no frames (image/encoded)')
    return first_items(c, num_frames, raw[fmt.FPS])

  def decode(raw, keys, out, name, offsets, num_available, *, num_frames, stride, crop_size):
    """The crops of the clips starting at `offsets` as out[name], their draws beside them."""
    indices = video_ops.frame_indices(offsets, num_frames, stride, num_available)
    jpegs = tf.gather(raw[fmt.IMAGE], tf.reshape(indices, [-1]))
    shape = tf.io.extract_jpeg_shape(jpegs[0])
    box = video_ops.crop_box(shape[0], shape[1], crop_size=crop_size, train=train,
                             seed=keys[1], scale_jitter=tuple(c.scale_jitter),
                             min_resize=c.min_resize, position=crop_position(c))
    window = video_ops.window_shape(crop_size, tuple(c.scale_jitter))
    frames, crop = video_ops.decode_crop(jpegs, box, window)
    out[name] = tf.reshape(frames, tf.concat([[clips, num_frames], tf.shape(frames)[1:]], 0))
    out[f'{name}_box'] = tf.tile(crop[None], [clips, 1])
    if train and c.random_flip:
      out[f'{name}_flip'] = video_ops.flip_draw(keys[2])[None]
    if train and c.color_augment:
      out[f'{name}_colour'] = video_ops.colour_draw(keys[3])[None]

  def video(raw, keys, out):
    num_available = available_frames(raw)
    span = (c.num_frames - 1) * c.frame_stride + 1
    offsets = video_ops.clip_offsets(num_available, span, num_clips=clips, train=train,
                                     seed=keys[0], rule=rule, stride=c.frame_stride)
    decode(raw, keys, out, 'frames', offsets, num_available, num_frames=c.num_frames,
           stride=c.frame_stride, crop_size=c.crop_size)
    return offsets, num_available

  def view_offsets(view, keys, main_offsets, num_available):
    if view.placement == 'same':
      return main_offsets
    if view.placement == 'within':
      room = c.num_frames * c.frame_stride - view_ops.frames_spanned(view)
      return main_offsets + tf.random.stateless_uniform([1], keys[0], 0, room + 1, tf.int32)
    span = (view.num_frames - 1) * view.frame_stride + 1
    return video_ops.clip_offsets(num_available, span, num_clips=1, train=True, seed=keys[0],
                                  rule=rule, stride=view.frame_stride)

  def audio_windows(raw, starts_s, seconds):
    rate = c.audio_sample_rate
    waves = audio_ops.windows(raw[fmt.WAVEFORM], starts_s, rate_in=raw[fmt.SAMPLE_RATE],
                              rate_out=rate, num_samples=num_audio_samples(c, seconds))
    if c.audio_format == 'log_mel':
      waves = audio_ops.log_mel_spectrogram(
          waves, sample_rate=rate, window=c.stft_window, hop=c.stft_hop,
          num_mel_bins=c.num_mel_bins, lower_hz=c.mel_lower_hz, upper_hz=c.mel_upper_hz,
          log_offset=c.log_offset)
    return waves

  def audio(raw, starts_s, out):
    out['audio'] = audio_windows(raw, starts_s, duration_s)
    out['audio_mask'] = tf.fill([clips], tf.cast(tf.size(raw[fmt.WAVEFORM]) > 0, tf.float32))

  def add_views(raw, key, main_offsets, num_available, out):
    for view in views:
      keys = tf.random.experimental.stateless_split(
          tf.random.experimental.stateless_fold_in(key, _view_salt(view)), 4)
      offsets = view_offsets(view, keys, main_offsets, num_available)
      decode(raw, keys, out, view_ops.frames_key(view), offsets, num_available,
             num_frames=view.num_frames, stride=view.frame_stride, crop_size=view.crop_size)
      if view.with_audio:
        starts_s = tf.cast(offsets, tf.float32) / raw[fmt.FPS]
        out[view_ops.audio_key(view)] = audio_windows(raw, starts_s, view_seconds(c, view))

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

  def record_key(element, out):
    key = key_ops.record_key(element['record'])
    if with_keys:
      out['key'] = tf.tile(key_ops.key_pair(key)[None], [clips, 1])
    if key_table is not None:
      out['pseudo_label'] = tf.fill([clips], key_table.lookup(key))

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
      offsets, num_available = video(raw, keys, out)
      starts_s = tf.cast(offsets, tf.float32) / raw[fmt.FPS]
      add_views(raw, key, offsets, num_available, out)
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
    if with_keys or key_table is not None:
      record_key(element, out)
    out.update(_part=element['part'], _index=element['index'], _seq=element['seq'],
               _tails=element['tails'], _last_tail=element['last_tail'])
    return out

  # No Python control flow depends on tensors here: tracing without AutoGraph is faster.
  return tf.autograph.experimental.do_not_convert(fn)
