"""Stable record keys (`data.with_keys`) and per-key labels a training run attaches on the host.

A record's key is the farmhash64 fingerprint (`tf.fingerprint`) of its serialized bytes: the
same record has the same key whatever the shards, their order, the process or the epoch it is
read in; records with identical bytes share it, and a record converted again (other JPEG
bytes) gets another. JAX runs without 64-bit integers, so an example carries it as `key`, int32
[2]: (high, low) 32 bits of the int64, each as a signed int32 (`to_int64` turns the pairs of a
batch back into int64 keys with numpy).

`key_labels` = (keys int64 [n], labels int32 [n]), given to `mmv.data.stream.train_stream`,
adds `pseudo_label` int32 to each example: the label of its record's key, −1 for a record not
among `keys` (XDC's cluster assignments of the previous round, say). The labels are fixed for
the stream's life: new labels mean a new stream, from the old one's state to continue exactly.
"""

import numpy as np
import tensorflow as tf

UNKNOWN_LABEL = -1


def record_key(record):
  """The int64 key of a serialized record (scalar string tensor): its fingerprint's 8 bytes,
  little-endian."""
  digest = tf.cast(tf.fingerprint(tf.reshape(record, [1]))[0], tf.int64)  # [8] bytes
  shifted = tf.bitwise.left_shift(digest, tf.range(0, 64, 8, dtype=tf.int64))
  return tf.foldl(tf.bitwise.bitwise_or, shifted)


def key_pair(key):
  """int64 key → int32 [2] (high, low halves), the form examples carry to the device."""
  halves = tf.stack([tf.bitwise.right_shift(key, 32), tf.bitwise.bitwise_and(key, 0xFFFFFFFF)])
  # Each half as the int32 of its 32 bits (values of 2**31 and up wrap to negatives).
  return tf.cast(halves - tf.where(halves >= 2**31, tf.constant(2**32, tf.int64), 0), tf.int32)


def to_int64(pairs):
  """int32 [..., 2] keys of a batch (numpy or jax) → int64 [...] keys."""
  pairs = np.asarray(pairs)
  if pairs.shape[-1:] != (2,) or pairs.dtype != np.int32:
    raise ValueError(f'keys are int32 pairs [..., 2], got {pairs.dtype} {pairs.shape}')
  high, low = pairs[..., 0].astype(np.int64), pairs[..., 1].astype(np.int64)
  return (high << 32) | (low & 0xFFFFFFFF)


def label_table(key_labels):
  """(keys int64 [n], labels int32 [n]) → a `tf.lookup.StaticHashTable`, −1 for other keys."""
  keys, labels = (np.asarray(x) for x in key_labels)
  if keys.ndim != 1 or keys.shape != labels.shape:
    raise ValueError(f'key_labels must be (keys [n], labels [n]), got shapes {keys.shape} and '
                     f'{labels.shape}')
  if not np.issubdtype(keys.dtype, np.integer) or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f'key_labels must be integers (int64 keys, int32 labels), got '
                     f'{keys.dtype} and {labels.dtype}')
  if len(np.unique(keys)) != len(keys):
    raise ValueError('key_labels has a key twice')
  if labels.size and (labels.min() < np.iinfo(np.int32).min or
                      labels.max() > np.iinfo(np.int32).max):
    raise ValueError('key_labels labels must fit int32')
  initializer = tf.lookup.KeyValueTensorInitializer(
      tf.constant(keys.astype(np.int64)), tf.constant(labels.astype(np.int32)))
  return tf.lookup.StaticHashTable(initializer, default_value=UNKNOWN_LABEL)
