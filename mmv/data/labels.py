"""Class labels for tf.data: single or multi-label, as an index, one-hot or multi-hot."""

import tensorflow as tf

LABEL_FORMATS = ('index', 'one_hot', 'multi_hot')


def check_format(label_format, num_classes):
  if label_format not in LABEL_FORMATS:
    raise ValueError(f'label_format must be one of {LABEL_FORMATS}, got {label_format!r}')
  if label_format != 'index' and num_classes <= 0:
    raise ValueError(f"label_format={label_format!r} needs data.num_classes > 0")


def encode(indices, label_format, num_classes):
  """int64 class indices [n] of a clip → 'index': int32 [] (the first, −1 if none);
  'one_hot': float32 [classes] of the first; 'multi_hot': float32 [classes] of all."""
  indices = tf.cast(indices, tf.int32)
  first = tf.concat([indices, [-1]], 0)[0]
  if label_format == 'index':
    return first
  if label_format == 'one_hot':
    return tf.one_hot(first, num_classes)  # All zeros for −1.
  return tf.reduce_max(tf.one_hot(tf.concat([indices, [-1]], 0), num_classes), axis=0)

