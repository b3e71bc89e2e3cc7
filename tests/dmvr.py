"""Writing small DMVR-format records in tests."""

import os

import numpy as np
import tensorflow as tf

from mmv.data import format as fmt


_bytes, _ints, _floats = fmt.bytes_feature, fmt.ints_feature, fmt.floats_feature


def record(*, name, frames=None, jpegs=None, waveform=None, captions=(), caption_times=None,
           labels=(), label_names=(), fps=10.0, sample_rate=1000.0, start_us=0):
  """A serialized SequenceExample; `frames` uint8 [T, H, W, 3] are JPEG-encoded."""
  if frames is not None:
    jpegs = [tf.io.encode_jpeg(f, quality=95).numpy() for f in frames]
  context = {fmt.FILENAME: _bytes([name.encode()]), fmt.FPS: _floats([fps]),
             fmt.SAMPLE_RATE: _floats([sample_rate]), fmt.START_US: _ints([start_us])}
  if captions:
    context[fmt.CAPTION] = _bytes([c.encode() for c in captions])
  if caption_times:
    context[fmt.CAPTION_START_US] = _ints([int(s * 1e6) for s, _ in caption_times])
    context[fmt.CAPTION_END_US] = _ints([int(e * 1e6) for _, e in caption_times])
  if labels:
    context[fmt.LABEL_INDEX] = _ints(labels)
    context[fmt.LABEL_TEXT] = _bytes([n.encode() for n in label_names])
  lists = {}
  if jpegs is not None:
    lists[fmt.IMAGE] = tf.train.FeatureList(feature=[_bytes([j]) for j in jpegs])
  if waveform is not None:
    lists[fmt.WAVEFORM] = tf.train.FeatureList(feature=[_floats(np.asarray(waveform))])
  return tf.train.SequenceExample(
      context=tf.train.Features(feature=context),
      feature_lists=tf.train.FeatureLists(feature_list=lists)).SerializeToString()


def write_shards(data_dir, split, records, num_shards):
  """Round-robin over `num_shards` shards; returns their paths."""
  os.makedirs(data_dir, exist_ok=True)
  paths = [os.path.join(data_dir, fmt.shard_name(split, i, num_shards)) for i in range(num_shards)]
  writers = [tf.io.TFRecordWriter(p) for p in paths]
  for i, r in enumerate(records):
    writers[i % num_shards].write(r)
  for w in writers:
    w.close()
  return paths


def write_vocab(data_dir, words):
  with open(os.path.join(data_dir, 'vocab.txt'), 'w') as f:
    f.write('\n'.join(words) + '\n')
