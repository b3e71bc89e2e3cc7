"""Training: the train state, the pure train step and the loop.

`train(config, workdir)` runs (or resumes) a run and returns its summary, so tests and
notebooks call it like `launch.py` does. The step is jitted over the mesh: the batch is split
over the `data` axis, the state is replicated and donated, and BatchNorm statistics and the
contrastive negatives span the global batch.
"""

import functools
import json
import os
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmv import checkpoint as ckpt_lib
from mmv import losses
from mmv import optim
from mmv import sharding as shard_lib
from mmv import writers
from mmv.data import pipeline
from mmv.data import text as text_ops
from mmv.models import mmv as mmv_model
from mmv.models import text as text_lib
from mmv.models import word2vec


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any

  def variables(self):
    return {'params': self.params, 'batch_stats': self.batch_stats}


def create_model(config):
  """The model for `config`, with the vocabulary size read from the dataset's vocab file."""
  words = text_ops.read_vocabulary(pipeline.vocab_path(config.data))
  return mmv_model.build_model(config.model, vocab_size=len(words) + 2)


def create_optimizer(config):
  """The optimiser for `config`; it leaves the model's frozen params (word2vec) alone."""
  return optim.make_optimizer(config.optim, config.train.steps,
                              frozen=mmv_model.frozen_params(config.model))


def dummy_inputs(data_config, batch_size=2):
  shapes = pipeline.output_shapes(data_config)
  return (jnp.zeros((batch_size,) + shapes['video'], jnp.float32),
          jnp.zeros((batch_size,) + shapes['audio'], jnp.float32),
          jnp.zeros((batch_size,) + shapes['text'], jnp.int32))


def init_state(rng, *, model, tx, data_config):
  variables = model.init(rng, *dummy_inputs(data_config), train=False)
  params = variables['params']
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables.get('batch_stats', {}), opt_state=tx.init(params))


def train_step(state, batch, *, model, tx, loss_config):
  """One optimiser step on a global batch; returns the new state and scalar metrics."""

  def loss_fn(params):
    embeddings, updates = model.apply(
        {'params': params, 'batch_stats': state.batch_stats},
        batch['video'], batch['audio'], batch['text'], train=True, mutable=['batch_stats'])
    loss, terms = losses.mmv_loss(
        embeddings, batch, temperature=loss_config.temperature,
        weight_va=loss_config.weight_va, weight_vt=loss_config.weight_vt)
    return loss, (terms, updates['batch_stats'])

  (loss, (terms, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {'loss': loss, **terms, 'grad_norm': optax.global_norm(grads)}
  new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                            opt_state=opt_state)
  return new_state, metrics


def abstract_train_state(config, model, tx, mesh):
  """Shapes, dtypes and (replicated) shardings of the train state, without computing it."""
  init = functools.partial(init_state, model=model, tx=tx, data_config=config.data)
  shapes = jax.eval_shape(init, jax.random.key(0))
  sharding = shard_lib.replicated(mesh)
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                      shapes)


def create_train_state(config, model, tx, mesh):
  """Initialises the state directly onto its shardings, with the word2vec vectors if any."""
  abstract = abstract_train_state(config, model, tx, mesh)
  init = functools.partial(init_state, model=model, tx=tx, data_config=config.data)
  shardings = jax.tree.map(lambda s: s.sharding, abstract)
  state = jax.jit(init, out_shardings=shardings)(jax.random.key(config.seed))
  if config.model.word2vec:
    words = text_ops.read_vocabulary(pipeline.vocab_path(config.data))
    matrix = word2vec.load_matrix(config.model, words)
    state = state.replace(params=with_word_embeddings(state.params, matrix))
  return state


def with_word_embeddings(params, matrix):
  """`params` with the text backbone's embedding matrix replaced by `matrix`, same sharding.

  The optimiser state needs no change: frozen params have none.
  """

  def replace(path, x):
    if jax.tree_util.keystr(path, simple=True, separator='/') != text_lib.EMBEDDINGS_PATH:
      return x
    if x.shape != matrix.shape:
      raise ValueError(f'word embeddings {matrix.shape} do not fit the model\'s {x.shape}')
    return jax.device_put(matrix.astype(x.dtype), x.sharding)

  return jax.tree_util.tree_map_with_path(replace, params)


def train(config, workdir):
  """Trains (resuming from the latest checkpoint in `workdir/checkpoints` if any).

  Returns {'step': final step, 'history': [(step, metrics), ...] logged in this call}.
  """
  mesh = shard_lib.make_mesh()
  local_batch = shard_lib.check_batch_size(config.train.batch_size, mesh, 'train.batch_size')
  total_steps = config.train.steps
  model = create_model(config)
  tx = create_optimizer(config)

  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                       max_to_keep=config.train.max_to_keep)
  abstract = abstract_train_state(config, model, tx, mesh)
  signature = ckpt_lib.variable_signature(
      {'params': abstract.params, 'batch_stats': abstract.batch_stats})
  if checkpointer.latest_step() is not None:
    state, _ = checkpointer.restore(abstract, signature=signature)
    print(f'resumed from step {int(state.step)} in {checkpointer.directory}', flush=True)
  else:
    state = create_train_state(config, model, tx, mesh)
  start_step = int(state.step)

  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=1))

  step_fn = jax.jit(
      functools.partial(train_step, model=model, tx=tx, loss_config=config.loss),
      in_shardings=(jax.tree.map(lambda s: s.sharding, abstract),
                    shard_lib.batch_sharding(mesh)),
      out_shardings=(jax.tree.map(lambda s: s.sharding, abstract),
                     shard_lib.replicated(mesh)),
      donate_argnums=0)

  dataset = pipeline.make_dataset(
      config.data, config.data.train_split, batch_size=local_batch, train=True,
      seed=config.seed, process_index=jax.process_index(),
      process_count=jax.process_count(), start_example=start_step * local_batch)
  batches = pipeline.global_batches(dataset.as_numpy_iterator(),
                                    shard_lib.batch_sharding(mesh), config.data.prefetch)
  writer = writers.MetricWriter(workdir, total_steps)
  history = []
  step = start_step
  for step in range(start_step + 1, total_steps + 1):
    state, metrics = step_fn(state, next(batches))
    if step % config.train.log_every == 0 or step == total_steps:
      logged = writer.write(step, jax.device_get(metrics),
                            examples_per_step=config.train.batch_size)
      history.append((step, logged))
    if step % config.train.checkpoint_every == 0 or step == total_steps:
      checkpointer.save(step, state, signature=signature)
  checkpointer.wait_until_finished()
  checkpointer.close()
  writer.close()
  return {'step': step, 'history': history, 'state': state}
