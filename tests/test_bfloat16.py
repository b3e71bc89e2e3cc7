"""The paper's train step on the 8 fake devices: a tiny-width S3D-G computing in bfloat16, with
float32 parameters and losses, and frozen word2vec embeddings."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import mmv_s3d
from mmv import sharding
from mmv import train_step
from mmv.data import text as text_ops
from mmv.methods import mmv as mmv_method
from mmv.models import word2vec
from tests import word2vec_files

# Launches processes, converts media or trains: not in `make test-fast`.
pytestmark = pytest.mark.slow


def _random_like(abstract, seed=0):
  """Host-side random values of the abstract tree's shapes (XLA:CPU takes minutes to compile
  S3D-G's own initialisers; the step under test does not depend on how weights were drawn)."""
  rng = np.random.default_rng(seed)

  def value(path, s):
    name = jax.tree_util.keystr(path)
    if 'scale' in name or "'var'" in name:
      return np.ones(s.shape, s.dtype)
    if "'kernel'" in name or 'embedding' in name:
      fan_in = 1 if 'embedding' in name else np.prod(s.shape[:-1])
      return (rng.standard_normal(s.shape) / np.sqrt(fan_in)).astype(s.dtype)
    return np.zeros(s.shape, s.dtype)

  return jax.tree_util.tree_map_with_path(value, abstract)


def _batch(config, b, vocab_size):
  shapes = mmv_method.init_batch(config, b)
  video, audio, text = shapes['video'], shapes['audio'], shapes['text']
  rng = np.random.default_rng(1)
  return {'video': rng.random(video.shape, np.float32),
          'audio': rng.standard_normal(audio.shape).astype(np.float32),
          'text': rng.integers(0, vocab_size, text.shape).astype(np.int32),
          'audio_mask': np.ones(b, np.float32), 'mask': np.ones(b, np.float32),
          'text_mask': np.ones(text.shape[:2], np.float32)}


def test_bfloat16_train_step_of_tiny_s3d_g_with_frozen_word2vec(data_dir, tmp_path):
  config = mmv_s3d.get_config('runlocal')
  config.data.data_dir = data_dir
  config.model.audio_backbone = 'tiny_audio'  # S3D-G is what is under test.
  config.model.width = 8
  config.optim.warmup_steps = 0  # A full learning rate at the first step.
  vocabulary = text_ops.read_vocabulary(os.path.join(data_dir, 'vocab.txt'))
  config.model.word2vec = str(tmp_path / 'vectors.bin')
  word2vec_files.write_binary(config.model.word2vec, vocabulary, config.model.word_embedding_dim)
  config.model.dtype = 'bfloat16'  # The paper configs' dtype; `runlocal` computes in float32.
  assert jax.device_count() == 8

  mesh = sharding.make_mesh()
  model = train_step.create_model(config)
  tx = train_step.create_optimizer(config)
  abstract = train_step.abstract_train_state(config, model, tx, mesh)
  replicated = sharding.replicated(mesh)
  matrix = word2vec.load_matrix(config.model, vocabulary)
  params = train_step.with_word_embeddings(jax.device_put(_random_like(abstract.params), replicated),
                                      matrix)
  state = train_step.TrainState(
      step=jax.device_put(jnp.zeros((), jnp.int32), replicated), params=params,
      batch_stats=jax.device_put(_random_like(abstract.batch_stats), replicated),
      opt_state=jax.jit(tx.init, out_shardings=replicated)(params))
  batch = jax.device_put(_batch(config, 16, len(vocabulary) + 2),
                         sharding.batch_sharding(mesh))

  loss_fn = train_step.make_loss_fn(config, mesh)
  given = []  # What the losses are given, seen while the step is traced.

  def seen_loss_fn(outputs, batch):
    given.append(outputs)
    return loss_fn(outputs, batch)

  step = jax.jit(functools.partial(train_step.train_step, model=model, tx=tx,
                                   loss_fn=seen_loss_fn),
                 out_shardings=(jax.tree.map(lambda s: s.sharding, abstract), replicated))
  lowered = step.lower(state, batch)
  # The convolutions run in bfloat16; what the model returns to the losses is float32 (seen in
  # the step's own trace: a separate eval_shape of the model traced S3D-G once more).
  assert 'bf16' in lowered.as_text()
  assert given and all(e.dtype == jnp.float32 for e in jax.tree.leaves(given))
  assert {'video_va', 'audio_va', 'video_vt', 'text_vt'} <= set(given[0])

  new_state, metrics = lowered.compile()(state, batch)
  assert np.isfinite(float(metrics['loss'])) and float(metrics['grad_norm']) > 0
  assert int(new_state.step) == 1
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(new_state.params))
  stats = new_state.batch_stats['video_backbone']['Mixed_5c']['Branch_0_Conv2d_0a_1x1']['bn_0']
  assert not np.allclose(np.asarray(stats['mean']), 0)  # BN statistics updated in training.

  # The word2vec vectors stay as loaded while the rest of the text model learns, and they have
  # no optimiser state (Adam keeps two moments of every other parameter).
  text = lambda s: s.params['text_backbone']
  np.testing.assert_array_equal(np.asarray(text(new_state)['word_embeddings']['embedding']),
                                matrix)
  assert not np.allclose(np.asarray(text(new_state)['conv']['kernel']),
                         np.asarray(text(state)['conv']['kernel']))
  param_size = sum(x.size for x in jax.tree.leaves(state.params))
  opt_size = sum(x.size for x in jax.tree.leaves(state.opt_state))
  assert opt_size - 2 * (param_size - matrix.size) < 10  # (+ step counters)
