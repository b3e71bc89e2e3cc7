"""The tf.data input pipeline: DMVR shards → per-process host batches → global device batches.

Per example, on the host (`mmv.data.example`): parse the record, draw the example's randomness,
decode the sampled frames' crops (uint8), cut the audio windows aligned with the frames in
time, pick and tokenise captions, encode labels. Batches go to the devices as global
jax.Arrays, where `mmv.data.augment` turns the uint8 crops into float clips (`global_batches`).

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
  video_V    float32 [T_V, crop_V, crop_V, 3]  each extra view V of `data.views` (training only;
  audio_V    as audio, of the view's duration   see `mmv.data.views`), audio_V if it has audio
  key        int32 [2]  the record's key, with `data.with_keys` (`mmv.data.keys`)
  pseudo_label int32 []  the label of the record's key (−1 if none), with `key_labels`
  filename, label_name   bytes, host-side only, with `data.with_names`
Modalities left out of `data.modalities` have no keys. In evaluation each example gives
`data.num_test_clips` consecutive rows (its clips folded into the batch); evaluation reads
no extra views.
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
from mmv.data import example as example_ops
from mmv.data import keys as key_ops
from mmv.data import records
from mmv.data import text as text_ops
from mmv.data import video as video_ops
from mmv.data import views as view_ops

# Per example, removed by `mmv.data.stream`: the record's position and its stream element number,
# and the unreadable shard tails met so far (`mmv.data.records`).
BOOKKEEPING = ('_part', '_index', '_seq', '_tails', '_last_tail')


def vocab_path(c):
  return os.path.join(c.data_dir, c.vocab)


def run_vocabulary(c, needed_for):
  """The absolute path of a training run's vocabulary (`c` its data config), or a
  FileNotFoundError saying what needs it (`needed_for`, e.g. 'to encode text') and how a command
  started elsewhere finds it."""
  vocab = vocab_path(c)
  if not tf.io.gfile.exists(vocab):
    raise FileNotFoundError(f'the training vocabulary {vocab!r} (data.data_dir/data.vocab of '
                            f'the run) is needed {needed_for}; run from the directory training '
                            'ran in, or pass a config (--config) whose data.data_dir is absolute')
  return os.path.abspath(vocab)


def make_tokenizer(c):
  if 'text' not in c.modalities:
    return None
  return text_ops.Tokenizer(text_ops.read_vocabulary(vocab_path(c)), c.stop_words, c.max_words)


def _audio_shape(c, seconds):
  samples = example_ops.num_audio_samples(c, seconds)
  if c.audio_format == 'waveform':
    return (samples,)
  return (audio_ops.num_spectrogram_frames(samples, c.stft_window, c.stft_hop), c.num_mel_bins, 1)


def output_shapes(c, train=True):
  """Per-clip shapes of the model's batch (after `global_batches`) for data config `c`: in
  training (`train`) with the extra views of `data.views`. `key` (int32) is there with
  `data.with_keys`; `pseudo_label` (int32 [], with `key_labels`) is not, being no config's."""
  shapes = {'label': () if c.label_format == 'index' else (c.num_classes,), 'mask': ()}
  if 'video' in c.modalities:
    shapes['video'] = (c.num_frames, c.crop_size, c.crop_size, 3)
  if 'audio' in c.modalities:
    shapes['audio'] = _audio_shape(c, example_ops.clip_seconds(c))
    shapes['audio_mask'] = ()
  if 'text' in c.modalities:
    shapes['text'] = (c.num_captions, c.max_words)
    shapes['text_mask'] = (c.num_captions,)
  for view in view_ops.parse(c) if train else ():
    shapes[view_ops.video_key(view)] = (view.num_frames, view.crop_size, view.crop_size, 3)
    if view.with_audio:
      shapes[view_ops.audio_key(view)] = _audio_shape(c, example_ops.view_seconds(c, view))
  if c.get('with_keys', False):
    shapes['key'] = (2,)
  return shapes


def _fold_clips(batch):
  """[examples, clips, ...] → [examples · clips, ...]: each example's clips consecutive."""
  return {k: v if k in BOOKKEEPING else
          tf.reshape(v, tf.concat([[-1], tf.shape(v)[2:]], 0)) for k, v in batch.items()}


def _example_fn(c, tokenizer, *, train, augment, seed, key_labels=None):
  """The per-example function of a stream: training's reads the extra views."""
  return example_ops.make_example_fn(
      c, tokenizer, train=augment, seed=seed, views=view_ops.parse(c) if train else (),
      key_table=None if key_labels is None else key_ops.label_table(key_labels))


def source_dataset(c, files, *, batch_size, train, seed, tokenizer, start=(0, 0),
                   augment=None, key_labels=None):
  """Host batches of `batch_size` examples of `files`, from position `start`.

  Records that fail (see `mmv.data.stream` for how they are counted) are dropped here;
  training repeats forever and drops the last partial batch, evaluation reads once. Each
  clip's crop is padded to the fixed buffer (`video.window_shape`) as it is copied into the batch.
  `augment` (default: `train`) makes examples as in training (one clip, random offset, crop,
  flip and colour); with `train=False` that is one augmented pass over `files` in order.
  Training reads the extra views of `data.views`; evaluation, augmented or not, reads none.
  `key_labels` (keys int64 [n], labels int32 [n]) adds `pseudo_label`, the label of each
  example's record key (−1 for other keys; `mmv.data.keys`).
  """
  augment = train if augment is None else augment
  stream = records.record_stream(files, train=train, seed=seed,
                                 shuffle_buffer=c.shuffle_buffer, start=start)
  example_fn = _example_fn(c, tokenizer, train=train, augment=augment, seed=seed,
                           key_labels=key_labels)
  ds = stream.map(example_fn, num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=True).ignore_errors()
  shapes = {k: spec.shape for k, spec in ds.element_spec.items()}
  crops = [('frames', c.crop_size)] + [(view_ops.frames_key(v), v.crop_size)
                                        for v in view_ops.parse(c)]
  for name, crop_size in crops:
    if name in shapes:
      window = video_ops.window_shape(crop_size, tuple(c.scale_jitter))
      shapes[name] = shapes[name][:2].concatenate(window + (3,))
  ds = ds.padded_batch(batch_size, padded_shapes=shapes, drop_remainder=train)
  return ds.map(_fold_clips)


def describe_record(c, files, position, *, train, seed, tokenizer, augment=None):
  """'FILE (record N): what fails' for the element at `position` of the record stream."""
  augment = train if augment is None else augment
  element = next(iter(records.record_stream(files, train=train, seed=seed,
                                            shuffle_buffer=c.shuffle_buffer, start=position)))
  where = f'{element["file"].numpy().decode()} (record {int(element["record_number"])})'
  try:  # Eagerly, so the error is the failing op's own message.
    _example_fn(c, tokenizer, train=train, augment=augment, seed=seed)(element)
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
