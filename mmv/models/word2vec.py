"""Pretrained word2vec embeddings for the text backbone (the paper freezes GoogleNews vectors).

Reads the word2vec text format (`N D` header, then `word v1 … vD` per line) and the binary
format of the GoogleNews release (`N D` header, then `word ` + D little-endian float32 per
entry), gzipped or not. Files list words by decreasing frequency, so the first N usable entries
are the N most frequent words; usable means that the lower-cased word is a token the tokenizer
(`mmv.data.text`) can produce — letters and digits only, so GoogleNews phrases like `New_York`
are skipped — and that no more frequent casing of it came first.

The embedding matrix is aligned with the tokenizer's ids: row 0 (padding) and row 1 (unknown
word) are zero vectors, row 2 + i is the vector of the i-th word of the vocabulary file.

`python -m mmv.tools.word2vec_vocab` writes such a vocabulary file (the paper's: the 65,536
most frequent words).
"""

import gzip
import re

from absl import logging
import numpy as np
import tensorflow as tf

_TOKEN = re.compile(r'[a-z0-9]+')


def _open(path):
  f = tf.io.gfile.GFile(path, 'rb')
  return gzip.GzipFile(fileobj=f) if path.endswith('.gz') else f


def _read_binary_word(f):
  """Bytes up to the next space, skipping the newline the C tool writes after each vector."""
  chars = []
  while True:
    ch = f.read(1)
    if not ch:
      raise ValueError('word2vec file ends in the middle of an entry')
    if ch == b' ':
      return b''.join(chars)
    if ch != b'\n' or chars:
      chars.append(ch)


def read_word2vec(path, max_words=None, binary=None):
  """(words, float32 [n, D] vectors) of the first `max_words` usable words of a word2vec file.

  `binary` defaults to whether the file name ends in `.bin` or `.bin.gz`.
  """
  binary = path.endswith(('.bin', '.bin.gz')) if binary is None else binary
  words, vectors, seen = [], [], set()
  with _open(path) as f:
    header = f.readline().split()
    if len(header) != 2 or not all(h.isdigit() for h in header):
      raise ValueError(f'{path} has no word2vec header line "NUM_WORDS DIM"')
    total, dim = int(header[0]), int(header[1])
    for entry in range(total):
      if max_words is not None and len(words) == max_words:
        break
      if binary:
        word = _read_binary_word(f)
        vector = np.frombuffer(f.read(4 * dim), '<f4')
      else:
        fields = f.readline().rstrip(b'\r\n').split(b' ')
        word, vector = fields[0], np.asarray(fields[1:], np.float32)
      if vector.shape != (dim,):
        raise ValueError(f'{path}: entry {entry} has {vector.size} values, expected {dim}')
      word = word.decode('utf-8', errors='replace').lower()
      if _TOKEN.fullmatch(word) and word not in seen:
        seen.add(word)
        words.append(word)
        vectors.append(vector)
  if not words:
    raise ValueError(f'{path} has no usable words')
  return words, np.stack(vectors).astype(np.float32)


def embedding_matrix(vocabulary, words, vectors):
  """float32 [len(vocabulary) + 2, D] rows for the tokenizer's ids, and the vocabulary words
  word2vec lacks (their rows stay zero, like the unknown word's)."""
  index = {w: i for i, w in enumerate(words)}
  matrix = np.zeros((len(vocabulary) + 2, vectors.shape[1]), np.float32)
  missing = []
  for i, word in enumerate(vocabulary):
    if word in index:
      matrix[i + 2] = vectors[index[word]]
    else:
      missing.append(word)
  return matrix, missing


def load_matrix(model_config, vocabulary):
  """The frozen embedding matrix for `vocabulary` from `model_config.word2vec`."""
  c = model_config
  words, vectors = read_word2vec(c.word2vec, c.word2vec_max_words)
  if vectors.shape[1] != c.word_embedding_dim:
    raise ValueError(f'{c.word2vec} has {vectors.shape[1]}-d vectors but '
                     f'model.word_embedding_dim={c.word_embedding_dim}')
  matrix, missing = embedding_matrix(vocabulary, words, vectors)
  if missing:
    logging.warning('%d of %d vocabulary words are not among the %d word2vec words and embed '
                    'as the unknown word (e.g. %s)', len(missing), len(vocabulary), len(words),
                    ', '.join(missing[:5]))
  return matrix

