"""Frozen word2vec embeddings: both file formats, the N most frequent words, the tokenizer's ids,
and the matrix in a fresh train state (test_bfloat16 checks that training leaves it alone)."""

import os

import numpy as np
import pytest

from mmv import sharding
from mmv import train_step
from mmv.data import text as text_ops
from mmv.models import word2vec
from tests import cli_in_process
from tests import word2vec_files

# In frequency order, as word2vec files are. 'The' and 'the' collide once lower-cased and
# 'New_York' is not a token the tokenizer can produce: both are skipped.
ENTRIES = ['The', 'circle', 'New_York', 'moves', 'the', 'left', 'red', 'square']
USABLE = ['the', 'circle', 'moves', 'left', 'red', 'square']


@pytest.mark.parametrize('name', ['vectors.txt', 'vectors.bin', 'vectors.bin.gz'])
def test_reads_the_most_frequent_usable_words(tmp_path, name):
  path = str(tmp_path / name)
  write = word2vec_files.write_text if name.endswith('.txt') else word2vec_files.write_binary
  write(path, ENTRIES, 4)
  words, vectors = word2vec.read_word2vec(path, max_words=4)
  assert words == USABLE[:4]
  rows = [ENTRIES.index(w) if w != 'the' else 0 for w in USABLE[:4]]  # 'The' came first.
  np.testing.assert_allclose(vectors, word2vec_files.vectors(4, len(ENTRIES))[rows], rtol=1e-6)
  assert word2vec.read_word2vec(path)[0] == USABLE


def test_matrix_rows_follow_the_tokenizer_ids(tmp_path):
  path = str(tmp_path / 'vectors.bin')
  word2vec_files.write_binary(path, ENTRIES, 3)
  words, vectors = word2vec.read_word2vec(path)
  vocabulary = ['square', 'moves', 'triangle']  # 'triangle' is not in word2vec.
  matrix, missing = word2vec.embedding_matrix(vocabulary, words, vectors)
  assert missing == ['triangle'] and matrix.shape == (5, 3)
  ids = text_ops.Tokenizer(vocabulary, max_words=5)(['Square moves purple'])[0].numpy()
  assert list(ids) == [2, 3, text_ops.UNK_ID, text_ops.PAD_ID, text_ops.PAD_ID]
  np.testing.assert_array_equal(matrix[ids[0]], vectors[words.index('square')])
  np.testing.assert_array_equal(matrix[ids[1]], vectors[words.index('moves')])
  assert not matrix[[text_ops.PAD_ID, text_ops.UNK_ID, 4]].any()  # Pad, unknown, missing.


def test_a_fresh_train_state_holds_the_word2vec_vectors(config, tmp_path):
  vocabulary = text_ops.read_vocabulary(os.path.join(config.data.data_dir, 'vocab.txt'))
  path = str(tmp_path / 'vectors.txt')
  word2vec_files.write_text(path, vocabulary[::-1] + ['unused'], config.model.word_embedding_dim)
  config.model.word2vec = path
  model = train_step.create_model(config)
  state = train_step.create_train_state(config, model, train_step.create_optimizer(config),
                                   sharding.make_mesh())
  words, vectors = word2vec.read_word2vec(path)
  np.testing.assert_array_equal(
      np.asarray(state.params['text_backbone']['word_embeddings']['embedding']),
      word2vec.embedding_matrix(vocabulary, words, vectors)[0])
  config.model.word_embedding_dim += 1
  with pytest.raises(ValueError, match='has 16-d vectors but model.word_embedding_dim=17'):
    word2vec.load_matrix(config.model, vocabulary)


def test_vocabulary_cli_writes_the_most_frequent_words(tmp_path, capsys):
  path, vocab = str(tmp_path / 'vectors.bin.gz'), str(tmp_path / 'vocab.txt')
  word2vec_files.write_binary(path, ENTRIES, 3)
  # The command's main in this process (its flags and output as launched; tests/cli_in_process).
  cli_in_process.run('mmv.tools.word2vec_vocab',
                     [f'--word2vec={path}', '--num_words=5', f'--output={vocab}'])
  assert f'wrote 5 words to {vocab}' in capsys.readouterr().out
  assert text_ops.read_vocabulary(vocab) == USABLE[:5]
