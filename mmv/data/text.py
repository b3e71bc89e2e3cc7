"""Text ops for tf.data: a word tokenizer over a vocabulary file, stop words, K captions."""

import tensorflow as tf

from mmv.data import format as fmt

PAD_ID = 0
UNK_ID = 1


def read_vocabulary(path):
  """Words of a vocabulary file (one per line); ids start at 2 after <pad> and <unk>."""
  with tf.io.gfile.GFile(path) as f:
    words = [line.strip() for line in f if line.strip()]
  if not words:
    raise ValueError(f'vocabulary file {path} is empty')
  return words


class Tokenizer(tf.Module):
  """Lower-cases, splits on anything but letters and digits, drops stop words, maps to ids.

  A tf.Module, so that a SavedModel holding one tracks (saves) its tables.
  `ids`, when given, is the word → id table (int32 ids of `words` from 2, UNK_ID for any other
  word) to use instead of one holding `words` as a constant: a SavedModel's table reads them from
  its vocabulary asset (`mmv.tools.export`).
  """

  def __init__(self, words, stop_words=(), max_words=16, ids=None):
    super().__init__()
    self.vocab_size = len(words) + 2
    self.max_words = max_words
    if ids is None:
      ids = tf.lookup.StaticHashTable(
          tf.lookup.KeyValueTensorInitializer(
              tf.constant(words), tf.range(2, len(words) + 2, dtype=tf.int32)), UNK_ID)
    self._ids = ids
    stop = list(stop_words) or ['']
    self._stop = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(stop), tf.ones(len(stop), tf.bool)),
        False)

  def __call__(self, captions):
    """string [N] → int32 [N, max_words], padded with PAD_ID."""
    text = tf.strings.regex_replace(tf.strings.lower(captions), fmt.NON_WORD, ' ')
    words = tf.strings.split(tf.strings.strip(text))
    words = tf.ragged.boolean_mask(words, tf.logical_not(self._stop.lookup(words)))
    ids = tf.ragged.map_flat_values(self._ids.lookup, words)
    return ids.to_tensor(PAD_ID, shape=[None, self.max_words])


def with_words(tokens):
  """Indices (int64) of the rows of `tokens` [N, max_words] that keep a word.

  A caption of stop words only (or of punctuation, or empty) tokenises to all padding: it is no
  text, and counting it as a caption would give the losses an empty positive.
  """
  return tf.where(tf.reduce_any(tf.not_equal(tokens, PAD_ID), axis=1))[:, 0]


def choose_captions(num_available, k, *, train, seed):
  """Indices of K captions and their mask [K], for captions without timestamps.

  Training draws K with replacement among the clip's captions; evaluation takes the first K
  (the first caption is the query for retrieval). A clip without captions gets an all-zero mask.
  """
  n = tf.maximum(num_available, 1)
  if train:
    indices = tf.random.stateless_uniform([k], seed, 0, n, dtype=tf.int32)
    mask = tf.fill([k], tf.cast(num_available > 0, tf.float32))
  else:
    indices = tf.minimum(tf.range(k), n - 1)
    mask = tf.cast(tf.range(k) < num_available, tf.float32)
  return indices, mask


def nearest_captions(starts_us, ends_us, centres_us, k):
  """The K captions whose middles are nearest each clip centre, for narrated videos.

  starts_us, ends_us [N] caption times; centres_us [clips] → indices [clips, K], mask [clips, K]
  (0 where the video has fewer than K captions). Ties go to the earlier caption.
  """
  middles = tf.cast(starts_us + ends_us, tf.float64) / 2.0
  distance = tf.abs(middles[None, :] - tf.cast(centres_us, tf.float64)[:, None])
  order = tf.argsort(distance, axis=1, stable=True)
  available = tf.shape(starts_us)[0]
  order = tf.pad(order, [[0, 0], [0, tf.maximum(k - available, 0)]])[:, :k]
  mask = tf.broadcast_to(tf.cast(tf.range(k) < available, tf.float32), tf.shape(order))
  return order, mask
