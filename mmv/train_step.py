"""The train state and the pure train step.

`TrainState` (step, params, BatchNorm statistics, optimiser state), how it is created directly
onto its shardings (`abstract_train_state`, `create_train_state`), and `train_step`: one
optimiser step on a global batch, a pure function of (state, batch) that `mmv.train` jits over
the mesh. The model, its loss and its optimiser are those of `config.method` (`mmv.methods`);
losses span the global batch; with `train.microbatches` > 1 the gradients are computed in
micro-batches with the whole batch's negatives (GradCache).
"""

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from mmv import methods
from mmv import optim
from mmv import sharding as shard_lib
from mmv.data import pipeline
from mmv.data import text as text_ops
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
  """The model of `config.method` for `config`."""
  method = methods.get(config)
  method.check_config(config)
  return method.build_model(config)


def create_optimizer(config):
  """The optimiser of `config.method` for `config` (frozen params, e.g. word2vec, untouched)."""
  return methods.get(config).make_optimizer(config)


def make_loss_fn(config, mesh, implementation=None):
  """`(outputs, batch) -> (loss, terms)`: the loss of `config.method`; `implementation`
  overrides the config's where the method has several (MMV: 'dense' | 'chunked')."""
  return methods.get(config).make_loss_fn(config, mesh, implementation)


def init_variables(rng, model, config):
  """The model's {'params', 'batch_stats'} (the latter possibly empty), initialised from `rng`
  on zero inputs of the method's batch shapes."""
  variables = model.init(rng, methods.get(config).init_batch(config), train=False)
  return {'params': variables['params'], 'batch_stats': variables.get('batch_stats', {})}


def init_state(rng, *, model, tx, config):
  variables = init_variables(rng, model, config)
  params = variables['params']
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables.get('batch_stats', {}), opt_state=tx.init(params))


def step_rngs(seed, step):
  """The model's random streams at train step `step` ('dropout', for the models that have
  it): stateless functions of (seed, step), so a resumed run draws what an uninterrupted one
  does."""
  return {'dropout': jax.random.fold_in(jax.random.key(seed), step)}


def embed(model, params, batch_stats, batch, rngs=None):
  """The model's training-mode outputs on a batch (the loss's inputs) and the updated
  BatchNorm statistics; `rngs` (`step_rngs`) for a model that draws (dropout)."""
  outputs, updates = model.apply({'params': params, 'batch_stats': batch_stats}, batch,
                                 train=True, mutable=['batch_stats'], rngs=rngs or {})
  return outputs, updates.get('batch_stats', batch_stats)


def loss_and_grads(params, batch_stats, batch, *, model, loss_fn, rngs=None):
  """(loss, terms, gradients, new BatchNorm statistics) of one pass over the whole batch."""

  def objective(params):
    embeddings, new_stats = embed(model, params, batch_stats, batch, rngs)
    loss, terms = loss_fn(embeddings, batch)
    return loss, (terms, new_stats)

  (loss, (terms, new_stats)), grads = jax.value_and_grad(objective, has_aux=True)(params)
  return loss, terms, grads, new_stats


def split_microbatches(tree, m):
  """[B, ...] → [m, B/m, ...]; micro-batch i holds rows i, i+m, i+2m, ...

  A device's contiguous block of rows then gives every micro-batch the same share, so each
  micro-batch is split over all devices without moving data.
  """
  return jax.tree.map(
      lambda a: jnp.swapaxes(a.reshape((a.shape[0] // m, m) + a.shape[1:]), 0, 1), tree)


def merge_microbatches(tree):
  """The inverse of `split_microbatches`."""
  return jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1).reshape((-1,) + a.shape[2:]), tree)


def cached_loss_and_grads(params, batch_stats, batch, *, model, loss_fn, microbatches):
  """`loss_and_grads` in micro-batches, with the negatives of the whole batch (GradCache).

  1. Embed each micro-batch, keeping only the embeddings ([B, D]: small).
  2. The loss of all embeddings together, and its gradient with respect to them.
  3. Embed each micro-batch again and backpropagate its slice of that gradient.
  The loss, its negatives and the gradients are those of the whole batch, with the activation
  memory of one micro-batch, for a second forward pass. One difference remains: BatchNorm
  normalises each micro-batch with the statistics of that micro-batch (over all devices), and
  its moving averages are updated once per micro-batch.
  """
  micro = split_microbatches(batch, microbatches)
  # A loop keeps one micro-batch's activations alive at a time. XLA:CPU runs convolution
  # gradients inside loops several times slower, and CPU runs are small: unrolled there.
  unroll = jax.default_backend() == 'cpu'

  def first_pass(stats, mb):
    embeddings, stats = embed(model, params, stats, mb)
    return stats, embeddings

  new_stats, embeddings = jax.lax.scan(first_pass, batch_stats, micro, unroll=unroll)
  (loss, terms), embedding_grads = jax.value_and_grad(loss_fn, has_aux=True)(
      merge_microbatches(embeddings), batch)

  def second_pass(grads, inputs):
    mb, g = inputs
    _, backprop = jax.vjp(lambda p: embed(model, p, batch_stats, mb)[0], params)
    return jax.tree.map(jnp.add, grads, backprop(g)[0]), None

  grads, _ = jax.lax.scan(second_pass, jax.tree.map(jnp.zeros_like, params),
                          (micro, split_microbatches(embedding_grads, microbatches)),
                          unroll=unroll)
  return loss, terms, grads, new_stats


def train_step(state, batch, *, model, tx, loss_fn, microbatches=1, seed=0):
  """One optimiser step on a global batch; returns the new state and scalar metrics.

  A model that draws (dropout) gets `step_rngs(seed, state.step)`; with `microbatches` > 1 it
  gets none (a method with dropout rejects micro-batches: `mmv.methods.finetune`).

  A step whose loss or gradients are not finite keeps the parameters, BatchNorm statistics and
  Adam's moments as they were and reports `nonfinite` = 1; the step counter still advances,
  keeping the data position, and so does the learning-rate schedule, which follows it. The loop
  then stops or goes on as `train.nonfinite` says.
  """
  if microbatches == 1:
    loss, terms, grads, batch_stats = loss_and_grads(
        state.params, state.batch_stats, batch, model=model, loss_fn=loss_fn,
        rngs=step_rngs(seed, state.step))
  else:
    loss, terms, grads, batch_stats = cached_loss_and_grads(
        state.params, state.batch_stats, batch, model=model, loss_fn=loss_fn,
        microbatches=microbatches)
  grad_norm = optax.global_norm(grads)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  keep_if_bad = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
  step = state.step + 1
  new_state = state.replace(
      step=step, params=keep_if_bad(params, state.params),
      batch_stats=keep_if_bad(batch_stats, state.batch_stats),
      opt_state=optim.with_schedule_count(keep_if_bad(opt_state, state.opt_state), step))
  metrics = {'loss': loss, **terms, 'grad_norm': grad_norm,
             'nonfinite': 1 - finite.astype(jnp.int32)}
  return new_state, metrics


def abstract_train_state(config, model, tx, mesh):
  """Shapes, dtypes and shardings of the train state, without computing it.

  Parameters and the optimiser's copies of them (Adam's moments) are placed by
  `config.mesh.param_rules`; the step, BatchNorm statistics and the rest are replicated.
  """
  init = functools.partial(init_state, model=model, tx=tx, config=config)
  shapes = jax.eval_shape(init, jax.random.key(0))
  replicated = shard_lib.replicated(mesh)
  params = shard_lib.param_shardings(shapes.params, mesh, config.mesh.param_rules)
  shardings = TrainState(
      step=replicated, params=params,
      batch_stats=jax.tree.map(lambda _: replicated, shapes.batch_stats),
      # Frozen parameters (word2vec) have an `optax.MaskedNode` in place of their moments.
      opt_state=optax.tree_map_params(
          tx, lambda x, s: x if isinstance(x, optax.MaskedNode) else s, shapes.opt_state,
          params, transform_non_params=lambda _: replicated,
          is_leaf=lambda x: isinstance(x, optax.MaskedNode)))
  return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                      shapes, shardings)


def create_train_state(config, model, tx, mesh, abstract=None):
  """Initialises the state directly onto its shardings (each device computes its part), with
  the word2vec vectors if any.

  `abstract`: `abstract_train_state(config, model, tx, mesh)` when already at hand.
  """
  abstract = abstract or abstract_train_state(config, model, tx, mesh)
  init = functools.partial(init_state, model=model, tx=tx, config=config)
  shardings = jax.tree.map(lambda s: s.sharding, abstract)
  state = jax.jit(init, out_shardings=shardings)(jax.random.key(config.seed))
  if config.model.word2vec:
    words = text_ops.read_vocabulary(pipeline.vocab_path(config.data))
    matrix = word2vec.load_matrix(config.model, words)
    state = state.replace(params=with_word_embeddings(state.params, matrix))
  # A method that starts from trained weights (fine-tuning: a pretrained backbone).
  initial_state = getattr(methods.get(config), 'initial_state', None)
  return initial_state(config, state, mesh) if initial_state else state


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
