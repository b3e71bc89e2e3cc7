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
from mmv.data import stream as data_stream
from mmv.data import text as text_ops
from mmv.models import mmv as mmv_model


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
  """Initialises the state directly onto its shardings."""
  abstract = abstract_train_state(config, model, tx, mesh)
  init = functools.partial(init_state, model=model, tx=tx, data_config=config.data)
  shardings = jax.tree.map(lambda s: s.sharding, abstract)
  return jax.jit(init, out_shardings=shardings)(jax.random.key(config.seed))


def train(config, workdir):
  """Trains (resuming from the latest checkpoint in `workdir/checkpoints` if any).

  Returns {'step': final step, 'history': [(step, metrics), ...] logged in this call}.
  """
  mesh = shard_lib.make_mesh()
  local_batch = shard_lib.check_batch_size(config.train.batch_size, mesh, 'train.batch_size')
  total_steps = config.train.steps
  model = create_model(config)
  tx = optim.make_optimizer(config.optim, total_steps)

  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                       max_to_keep=config.train.max_to_keep)
  abstract = abstract_train_state(config, model, tx, mesh)
  signature = ckpt_lib.variable_signature(
      {'params': abstract.params, 'batch_stats': abstract.batch_stats})
  data_state = None  # Where each process's input stream stands; saved with every checkpoint.
  if checkpointer.latest_step() is not None:
    state, meta = checkpointer.restore(abstract, signature=signature)
    data_state = meta.get('data')
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

  stream = data_stream.train_stream(
      config.data, batch_size=local_batch, seed=config.seed, process_index=jax.process_index(),
      process_count=jax.process_count(), state=data_state)
  batches = pipeline.global_batches(stream, shard_lib.batch_sharding(mesh), config.data,
                                    config.data.prefetch)
  writer = writers.MetricWriter(workdir, total_steps)
  history = []
  step = start_step
  for step in range(start_step + 1, total_steps + 1):
    state, metrics = step_fn(state, next(batches))
    log = step % config.train.log_every == 0 or step == total_steps
    save = step % config.train.checkpoint_every == 0 or step == total_steps
    if log or save:
      data = data_stream.gather_state(stream.state_after(step - start_step))
    if log:
      metrics = {**jax.device_get(metrics), 'data_skipped': sum(data['skipped'])}
      logged = writer.write(step, metrics, examples_per_step=config.train.batch_size)
      history.append((step, logged))
    if save:
      checkpointer.save(step, state, signature=signature, extra={'data': data})
  checkpointer.wait_until_finished()
  checkpointer.close()
  writer.close()
  return {'step': step, 'history': history, 'state': state}
