"""Writes a vocabulary file of the N most frequent usable words of a word2vec file.

    python -m mmv.tools.word2vec_vocab --word2vec GoogleNews-vectors-negative300.bin.gz \
        --num_words 65536 --output data/howto100m/vocab.txt

With it as the dataset's vocabulary and `--config.model.word2vec` pointing at the same file,
every vocabulary word gets its word2vec vector (see `mmv.models.word2vec`).
"""

from absl import app
from absl import flags
import tensorflow as tf

from mmv.models import word2vec

_WORD2VEC = flags.DEFINE_string('word2vec', None, 'word2vec file (text or binary, .gz ok).')
_NUM_WORDS = flags.DEFINE_integer('num_words', 65536, 'Vocabulary size (most frequent words).')
_OUTPUT = flags.DEFINE_string('output', None, 'The vocabulary file to write.')
flags.mark_flags_as_required(['word2vec', 'output'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  words, _ = word2vec.read_word2vec(_WORD2VEC.value, _NUM_WORDS.value)
  with tf.io.gfile.GFile(_OUTPUT.value, 'w') as f:
    f.write(''.join(w + '\n' for w in words))
  print(f'wrote {len(words)} words to {_OUTPUT.value}')


if __name__ == '__main__':
  app.run(main)
