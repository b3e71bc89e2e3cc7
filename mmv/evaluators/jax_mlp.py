"""An MLP classifier on frozen features, multi-label, trained in JAX on every device of a mesh.

For the AudioSet protocol (527 classes, up to ~2M training segments: too many for
scikit-learn). Features are standardised as the linear probe's are (`jax_linear.feature_stats`,
mean and σ over the training clips, applied inside the model, so no standardised copy is
made); then Dense → ReLU (→ dropout) per hidden layer, and a Dense layer to one logit per class.
The loss is sigmoid cross-entropy averaged over classes and clips; AdamW with a cosine decay of
the learning rate over the run; weight decay on the weights and biases alike.

Training streams minibatches of videos (all their clips, each with its video's multi-hot
labels) from a host array (an `np.memmap` works), `jax_linear.padded_rows`: the last batch of an
epoch is padded with zero-weight rows, so one program is compiled. Each batch is one global
array split over the mesh's devices (data parallel, parameters replicated): every process holds
the whole feature set (as the evaluation binary gathers it) and puts its devices' rows.
Test scores are the clips' logits averaged per video (`jax_linear.video_scores`).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmv import sharding
from mmv.evaluators import jax_linear
from mmv.evaluators import linear_probe as sk_probe

_HIGHEST = jax.lax.Precision.HIGHEST


class MLP(nn.Module):
  """Standardised features → (Dense → ReLU → dropout) per `hidden` width → `num_classes`."""
  hidden: tuple
  num_classes: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, stats, train=False):
    mean, inv_std = stats
    x = (x - mean) * inv_std
    for width in self.hidden:
      x = nn.relu(nn.Dense(width, precision=_HIGHEST)(x))
      if self.dropout:
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, precision=_HIGHEST)(x)


def _loss(params, model, stats, x, targets, weights, rng):
  logits = model.apply({'params': params}, x, stats, train=True, rngs={'dropout': rng})
  per_row = optax.sigmoid_binary_cross_entropy(logits, targets).mean(axis=-1)
  return jnp.sum(weights * per_row) / jnp.maximum(jnp.sum(weights), 1.0)


def _put(mesh, array):
  """`array` (the whole global batch, on every process) as a global array split over `mesh`."""
  spec = sharding.batch_sharding(mesh) if array.ndim else sharding.replicated(mesh)
  return jax.make_array_from_callback(array.shape, spec, lambda index: array[index])


def fit(features, targets, *, hidden=(512,), epochs=10, batch_videos=256, learning_rate=1e-3,
        weight_decay=1e-4, dropout=0.0, seed=0, mesh=None, chunk_videos=1024):
  """(score_fn, params, stats, {'steps', 'final_loss', ...}) of an MLP fitted on `features`
  [videos, clips, D] (or [videos, D]) and multi-hot `targets` [videos, classes].

  `batch_videos` is rounded up to a multiple of the mesh's devices; `score_fn(params, stats,
  x)` gives the logits, for `jax_linear.video_scores`.
  """
  features = sk_probe.as_clips(features)
  targets = np.asarray(targets, np.float32)
  if targets.ndim != 2 or targets.shape[0] != features.shape[0]:
    raise ValueError(f'targets {targets.shape} must be multi-hot [videos, classes] for '
                     f'features {features.shape}')
  if epochs < 1 or batch_videos < 1 or not all(w >= 1 for w in hidden) or not 0 <= dropout < 1:
    raise ValueError(f'an MLP needs epochs, batch_videos and hidden widths of at least 1 and '
                     f'dropout in [0, 1); got {epochs}, {batch_videos}, {hidden}, {dropout}')
  mesh = mesh or sharding.make_mesh()
  devices = mesh.devices.size
  num_videos = features.shape[0]
  batch_videos = -(-min(batch_videos, num_videos) // devices) * devices
  steps_per_epoch = -(-num_videos // batch_videos)
  total_steps = epochs * steps_per_epoch
  model = MLP(hidden=tuple(int(w) for w in hidden), num_classes=targets.shape[1],
              dropout=float(dropout))
  stats = jax_linear.feature_stats(features, chunk_videos=chunk_videos)
  key = jax.random.key(seed)
  params = model.init(key, jnp.zeros((1, features.shape[-1])), stats)['params']
  params = jax.device_put(params, sharding.replicated(mesh))
  stats = jax.device_put(stats, sharding.replicated(mesh))
  tx = optax.adamw(optax.cosine_decay_schedule(learning_rate, total_steps),
                   weight_decay=weight_decay)
  opt_state = tx.init(params)

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(params, opt_state, x, batch_targets, weights, step_index):
    rng = jax.random.fold_in(jax.random.fold_in(key, 1), step_index)
    loss, grad = jax.value_and_grad(_loss)(params, model, stats, x, batch_targets, weights, rng)
    updates, opt_state = tx.update(grad, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  rng = np.random.default_rng(seed)
  losses = []
  for i in range(total_steps):
    if i % steps_per_epoch == 0:
      order = rng.permutation(num_videos)
    batch = np.sort(order[(i % steps_per_epoch) * batch_videos:][:batch_videos])
    x, y, w = jax_linear.padded_rows(features, targets, batch, batch_videos)
    params, opt_state, loss = step(params, opt_state, _put(mesh, x), _put(mesh, y),
                                   _put(mesh, w), i)
    if (i + 1) % steps_per_epoch == 0:
      losses.append(loss)  # Fetched at the end: no device round trip per step.

  def score_fn(params, stats, x):
    return model.apply({'params': params}, x, stats)

  info = {'steps': total_steps, 'batch_videos': batch_videos, 'devices': devices,
          'epoch_loss': [float(v) for v in losses]}
  return score_fn, jax.device_get(params), jax.device_get(stats), info


def mlp_probe(train_features, train_targets, test_features, *, chunk_videos=1024, **options):
  """(test scores [test videos, classes]: logits averaged over each video's clips, the fit's
  info). `options`: `fit`'s."""
  score_fn, params, stats, info = fit(train_features, train_targets,
                                      chunk_videos=chunk_videos, **options)
  test_features = sk_probe.as_clips(test_features)
  scores = jax_linear.video_scores(params, stats, test_features, chunk_videos=chunk_videos,
                                   score_fn=score_fn)
  return scores, info
