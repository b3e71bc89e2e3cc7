"""The tf.data input pipeline: DMVR shards → per-process batches → global jax.Arrays.

Every random choice (frame offset, crop, caption choice) is a stateless function of
(seed, position of the example in the stream), and the stream itself is deterministic, so
`make_dataset(..., start_example=n)` yields exactly what an uninterrupted stream yields after n
examples. The skip happens before parsing: resuming does not decode the examples already used.

Each example is a dict:
  video      float32 [T, crop, crop, 3] in [0, 1]
  audio      float32 [frames, mel, 1] log-mel spectrogram
  audio_mask float32 []  1 if the clip has a waveform
  text       int32   [K, max_words] token ids, 0 = padding
  text_mask  float32 [K] 1 for a real caption
  label      int32   []  first class index, -1 if none
  mask       float32 []  1 for a real example (0 for evaluation padding)
"""

import os
import threading
import queue

import jax
import numpy as np
import tensorflow as tf

from mmv.data import audio as audio_ops
from mmv.data import format as fmt
from mmv.data import text as text_ops
from mmv.data import video as video_ops


def split_files(data_dir, split):
  """The shards `data_dir/split-*-of-*`, sorted; an error if there are none."""
  files = sorted(tf.io.gfile.glob(os.path.join(data_dir, f'{split}-*-of-*')))
  if not files:
    raise FileNotFoundError(f'no shards {split}-*-of-* in {data_dir!r}; make them with '
                            f'`python -m mmv.data.synthetic --output_dir {data_dir}` or '
                            'prepare a dataset as in the README')
  return files


def process_files(files, process_index, process_count):
  """This process's disjoint share of the files."""
  if len(files) < process_count:
    raise ValueError(f'{len(files)} shards cannot be shared by {process_count} processes')
  return files[process_index::process_count]


def vocab_path(data_config):
  return os.path.join(data_config.data_dir, data_config.vocab)


def num_audio_samples(c):
  return int(round(c.num_frames * c.frame_stride / c.fps * c.audio_sample_rate))


def output_shapes(c):
  """Per-example shapes of the pipeline's output for data config `c`."""
  frames = audio_ops.num_spectrogram_frames(num_audio_samples(c), c.stft_window, c.stft_hop)
  return {
      'video': (c.num_frames, c.crop_size, c.crop_size, 3),
      'audio': (frames, c.num_mel_bins, 1),
      'audio_mask': (),
      'text': (c.num_captions, c.max_words),
      'text_mask': (c.num_captions,),
      'label': (),
      'mask': (),
  }


def _parse(record):
  context, sequence = tf.io.parse_single_sequence_example(
      record,
      context_features={
          fmt.CAPTION: tf.io.VarLenFeature(tf.string),
          fmt.LABEL_INDEX: tf.io.VarLenFeature(tf.int64),
          fmt.FPS: tf.io.FixedLenFeature([], tf.float32, fmt.DEFAULT_FPS),
          fmt.SAMPLE_RATE: tf.io.FixedLenFeature([], tf.float32, fmt.DEFAULT_SAMPLE_RATE),
      },
      sequence_features={
          fmt.IMAGE: tf.io.FixedLenSequenceFeature([], tf.string),
          fmt.WAVEFORM: tf.io.VarLenFeature(tf.float32),
      })
  return {
      'jpegs': sequence[fmt.IMAGE],
      'waveform': tf.reshape(tf.sparse.to_dense(sequence[fmt.WAVEFORM]), [-1]),
      'captions': tf.sparse.to_dense(context[fmt.CAPTION]),
      'labels': tf.sparse.to_dense(context[fmt.LABEL_INDEX]),
      'fps': context[fmt.FPS],
      'sample_rate': context[fmt.SAMPLE_RATE],
  }


def make_example_fn(c, tokenizer, *, train, seed):
  """The per-example function: (position, serialized record) → example dict."""
  samples = num_audio_samples(c)

  def fn(position, record):
    raw = _parse(record)
    keys = tf.random.experimental.stateless_split(
        tf.stack([tf.cast(seed, tf.int64), position]), 4)
    num_frames = tf.shape(raw['jpegs'])[0]
    tf.debugging.assert_positive(num_frames, 'a record has no frames')
    indices, offset = video_ops.sample_indices(num_frames, c.num_frames, c.frame_stride,
                                               train=train, seed=keys[0])
    video = video_ops.decode_and_crop(
        tf.gather(raw['jpegs'], indices), c.crop_size, train=train, seed=keys[1],
        scale_jitter=tuple(c.scale_jitter), min_resize=c.min_resize)
    if train and c.random_flip:
      video = video_ops.random_flip(video, keys[2])

    tf.debugging.assert_near(
        raw['sample_rate'], tf.constant(c.audio_sample_rate, tf.float32),
        message=f'record sample rate differs from data.audio_sample_rate={c.audio_sample_rate}')
    start = tf.cast(offset, tf.float32) / raw['fps'] * raw['sample_rate']
    has_audio = tf.size(raw['waveform']) > 0
    waveform = audio_ops.aligned_window(raw['waveform'], start, samples)
    audio = audio_ops.log_mel_spectrogram(
        waveform, sample_rate=c.audio_sample_rate, window=c.stft_window, hop=c.stft_hop,
        num_mel_bins=c.num_mel_bins, lower_hz=c.mel_lower_hz, upper_hz=c.mel_upper_hz,
        log_offset=c.log_offset)

    caption_idx, text_mask = text_ops.choose_captions(
        tf.shape(raw['captions'])[0], c.num_captions, train=train, seed=keys[3])
    captions = tf.gather(tf.concat([raw['captions'], ['']], 0), caption_idx)
    labels = tf.concat([tf.cast(raw['labels'], tf.int32), [-1]], 0)
    return {
        'video': video,
        'audio': audio,
        'audio_mask': tf.cast(has_audio, tf.float32),
        'text': tokenizer(captions),
        'text_mask': text_mask,
        'label': labels[0],
        'mask': tf.constant(1.0),
    }

  return fn


def make_dataset(c, split, *, batch_size, train, seed=0, process_index=0, process_count=1,
                 start_example=0):
  """Per-process batches of `batch_size` examples from `split`.

  Training repeats forever over a seeded shuffle and drops nothing but the position; evaluation
  reads the split once in file order, and the last batch is smaller (see `pad_batch`).
  """
  files = process_files(split_files(c.data_dir, split), process_index, process_count)
  tokenizer = text_ops.Tokenizer(text_ops.read_vocabulary(vocab_path(c)), c.stop_words,
                                 c.max_words)
  ds = tf.data.Dataset.from_tensor_slices(files)
  if train:
    ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
  ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 8),
                     num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if train:
    ds = ds.shuffle(c.shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=True)
  ds = ds.enumerate().skip(start_example)
  ds = ds.map(make_example_fn(c, tokenizer, train=train, seed=seed + process_index * 7919),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch_size, drop_remainder=train)
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options).prefetch(c.prefetch)


def pad_batch(batch, batch_size):
  """Pads a smaller last batch to `batch_size` examples with mask 0."""
  n = batch['mask'].shape[0]
  if n == batch_size:
    return batch
  return {k: np.concatenate([v, np.zeros((batch_size - n,) + v.shape[1:], v.dtype)])
          for k, v in batch.items()}


def global_batches(local_batches, sharding, prefetch=2):
  """Turns an iterable of per-process numpy batches into global jax.Arrays on `sharding`.

  A background thread stays `prefetch` batches ahead, so the host-to-device copies overlap the
  train step. Each process passes its own batches; the global batch is their concatenation.
  """
  q = queue.Queue(maxsize=prefetch)
  done = object()

  def producer():
    try:
      for batch in local_batches:
        q.put({k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
               for k, v in batch.items()})
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
