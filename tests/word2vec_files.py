"""Small word2vec files in the text and the binary (GoogleNews) formats, for tests."""

import gzip

import numpy as np


def vectors(dim, n):
  return np.arange(n * dim, dtype=np.float32).reshape(n, dim) / 7


def write_text(path, words, dim):
  """`N D` header, then `word v1 ... vD` per line."""
  with open(path, 'w') as f:
    f.write(f'{len(words)} {dim}\n')
    for w, v in zip(words, vectors(dim, len(words))):
      f.write(w + ' ' + ' '.join(repr(float(x)) for x in v) + '\n')


def write_binary(path, words, dim):
  """The C tool's layout: header line, then `word ` + little-endian float32s + newline."""
  body = f'{len(words)} {dim}\n'.encode()
  for w, v in zip(words, vectors(dim, len(words))):
    body += w.encode() + b' ' + v.astype('<f4').tobytes() + b'\n'
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'wb') as f:
    f.write(body)
