"""A JAX linear classifier for linear probes on large sets (Kinetics), drop-in for the SVM.

It minimises LinearSVC's objective — one-vs-rest squared hinge on standardised features with an
L2 penalty on weights and bias, C·Σ_i loss_i + ½‖θ‖² — divided by C·n for conditioning. The
minimiser is the same, so C means what it means for scikit-learn and the same log grid applies;
only the solver differs. Two solvers:

- 'lbfgs': full batch with `optax.lbfgs` inside one jitted `while_loop`; the training features
  sit on the accelerator once (a float32 [clips, D] array). For UCF101/HMDB51/ESC-50-sized sets.
- 'adam': minibatches of videos streamed from a host array (an `np.memmap` works), for sets that
  do not fit on the accelerator; the objective's minibatch estimate under Adam, cosine decay.

Standardisation is folded into the weights (x·(W/σ) + b − (μ/σ)·W), so no standardised copy of
the features is ever made; the mean and σ are accumulated in float64 over chunks of videos.
C is chosen by the SVM's cross-validation — the same folds over videos, each with its own
standardisation, scored on clip-averaged scores — warm-starting each grid value from the
previous one. The model is then refitted on all training videos with the chosen C.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmv.evaluators import accuracy
from mmv.evaluators import linear_probe as sk_probe

DEFAULT_C_GRID = sk_probe.DEFAULT_C_GRID
_HIGHEST = jax.lax.Precision.HIGHEST  # TF32 matmuls would blur the line search on GPUs.


def feature_stats(features, videos=None, chunk_videos=1024):
  """(mean, 1/std) float32 [D] over every clip of `videos` of [videos, clips, D] `features`.

  Accumulated in float64 over chunks of videos. A constant feature gets 1/std = 1, as in
  scikit-learn's StandardScaler.
  """
  videos = np.arange(features.shape[0]) if videos is None else np.asarray(videos)
  dim = features.shape[-1]
  total, total_sq, count = np.zeros(dim), np.zeros(dim), 0
  for start in range(0, len(videos), chunk_videos):
    x = np.asarray(features[videos[start:start + chunk_videos]], np.float64).reshape(-1, dim)
    total += x.sum(axis=0)
    total_sq += np.square(x).sum(axis=0)
    count += x.shape[0]
  mean = total / count
  std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
  constant = std <= 1e-6 * np.abs(mean)  # Exactly 0, or below float32 resolution of the mean.
  inv_std = np.where(constant, 1.0, 1.0 / np.where(constant, 1.0, std))
  return jnp.asarray(mean, jnp.float32), jnp.asarray(inv_std, jnp.float32)


def _scores(params, stats, x):
  """Class scores [..., K] of raw features x [..., D] (standardised through the weights)."""
  mean, inv_std = stats
  w = params['w'] * inv_std[:, None]
  b = params['b'] - jnp.dot(mean * inv_std, params['w'], precision=_HIGHEST)
  return jnp.dot(x, w, precision=_HIGHEST) + b


def _objective(params, stats, x, targets, weights, c, num_train):
  """LinearSVC's objective / (C·num_train) on rows x [R, D] weighted by `weights` [R]."""
  signs = 2.0 * jax.nn.one_hot(targets, params['b'].shape[0]) - 1.0
  loss = jnp.sum(jnp.square(jax.nn.relu(1.0 - signs * _scores(params, stats, x))), axis=-1)
  penalty = jnp.sum(jnp.square(params['w'])) + jnp.sum(jnp.square(params['b']))
  return jnp.sum(weights * loss) / jnp.sum(weights) + penalty / (2.0 * c * num_train)


@functools.partial(jax.jit, static_argnames='max_iter')
def _fit_lbfgs(params, stats, x, targets, weights, c, tol, max_iter):
  """Full-batch L-BFGS for `max_iter` iterations at most.

  Stops once the gradient norm falls below `tol` times its norm at θ = 0: relative to a fixed
  point, so the criterion scales with the number of classes and dimensions but not with the
  warm start.
  """
  fun = functools.partial(_objective, stats=stats, x=x, targets=targets, weights=weights, c=c,
                          num_train=jnp.sum(weights))
  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(fun)
  tol = tol * optax.tree.norm(jax.grad(fun)(jax.tree.map(jnp.zeros_like, params)))

  def step(carry):
    params, state = carry
    value, grad = value_and_grad(params, state=state)
    updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=fun)
    return optax.apply_updates(params, updates), state

  def keep_going(carry):
    _, state = carry
    count = optax.tree.get(state, 'count')
    grad_norm = optax.tree.norm(optax.tree.get(state, 'grad'))
    return (count == 0) | ((count < max_iter) & (grad_norm > tol))

  params, _ = jax.lax.while_loop(keep_going, step, (params, opt.init(params)))
  return params


@jax.jit
def _adam_step(params, opt_state, stats, x, targets, weights, c, num_train, learning_rate):
  grad = jax.grad(_objective)(params, stats, x, targets, weights, c, num_train)
  updates, opt_state = optax.scale_by_adam().update(grad, opt_state, params)
  return jax.tree.map(lambda p, u: p - learning_rate * u, params, updates), opt_state


def _fit_adam(params, stats, features, columns, videos, c, *, epochs, batch_videos,
              learning_rate, seed):
  """Minibatches of `batch_videos` videos (all their clips) streamed from the host array."""
  num_clips = features.shape[1]
  rng = np.random.default_rng(seed)
  steps_per_epoch = -(-len(videos) // batch_videos)
  total_steps = epochs * steps_per_epoch
  opt_state = optax.scale_by_adam().init(params)
  for step in range(total_steps):
    if step % steps_per_epoch == 0:
      order = rng.permutation(videos)
    batch = np.sort(order[(step % steps_per_epoch) * batch_videos:][:batch_videos])
    x, targets, weights = padded_rows(features, columns, batch, batch_videos)
    # Cosine decay computed on the host: no device round trip per step.
    lr = np.float32(learning_rate * 0.5 * (1.0 + np.cos(np.pi * step / total_steps)))
    params, opt_state = _adam_step(params, opt_state, stats, x, targets, weights, c,
                                   len(videos) * num_clips, lr)
  return params


def padded_rows(features, targets, videos, size):
  """(rows [size · clips, D], their targets, weights) of the clips of `videos`, padded to
  `size` videos (weight 0) so shapes never change. `targets` [videos, ...]: a class column
  per video, or any per-video array (multi-hot labels), repeated for each of its clips."""
  num_clips, dim = features.shape[1:]
  x = np.zeros((size, num_clips, dim), np.float32)
  x[:len(videos)] = features[videos]
  weights = np.repeat(np.arange(size) < len(videos), num_clips).astype(np.float32)
  chosen = np.asarray(targets)[videos]
  chosen = np.pad(chosen, [(0, size - len(videos))] + [(0, 0)] * (chosen.ndim - 1))
  return x.reshape(size * num_clips, dim), np.repeat(chosen, num_clips, axis=0), weights


@functools.partial(jax.jit, static_argnames='score_fn')
def _video_scores(params, stats, x, score_fn):
  return score_fn(params, stats, x).mean(axis=1)


def video_scores(params, stats, features, videos=None, chunk_videos=1024, score_fn=None):
  """Clip-averaged scores [len(videos), K] of [videos, clips, D] `features`, in chunks.

  `score_fn(params, stats, x [..., D])` → scores [..., K]: the linear classifier's by default
  (another classifier, `jax_mlp`, passes its own)."""
  score_fn = score_fn or _scores
  videos = np.arange(features.shape[0]) if videos is None else np.asarray(videos)
  chunk_videos = min(chunk_videos, max(len(videos), 1))
  out = []
  for start in range(0, len(videos), chunk_videos):
    chunk = videos[start:start + chunk_videos]
    x = np.zeros((chunk_videos,) + features.shape[1:], np.float32)
    x[:len(chunk)] = features[chunk]  # The last chunk is padded: one compiled shape.
    out.append(np.asarray(_video_scores(params, stats, x, score_fn))[:len(chunk)])
  return np.concatenate(out)


def _zeros(dim, num_classes):
  return {'w': jnp.zeros((dim, num_classes)), 'b': jnp.zeros((num_classes,))}


def choose_c(fit, features, columns, c_grid, *, folds, seed, chunk_videos):
  """(best C, mean validation top-1 per C, folds used), the SVM's CV with `fit`.

  The folds are `linear_probe.video_folds`' (the SVM's, for the same seed); each fold has its
  own standardisation, and is fitted along the grid warm-starting from the previous C.
  """
  splits = sk_probe.video_folds(columns, folds, seed)
  top1 = np.zeros((len(splits), len(c_grid)))
  for i, (train_videos, val_videos) in enumerate(splits):
    stats = feature_stats(features, train_videos, chunk_videos)
    params = _zeros(features.shape[-1], int(columns.max()) + 1)
    for j, c in enumerate(c_grid):
      params = fit(params, stats, train_videos, c)
      scores = video_scores(params, stats, features, val_videos, chunk_videos)
      top1[i, j] = accuracy.topk_accuracy(scores, columns[val_videos], ks=(1,))['top1']
  cv_top1 = top1.mean(axis=0)
  return float(c_grid[int(np.argmax(cv_top1))]), [float(v) for v in cv_top1], len(splits)


def linear_probe(train_features, train_labels, test_features, test_labels, *,
                 c_grid=DEFAULT_C_GRID, c=None, folds=3, solver='lbfgs',
                 seed=0, tol=1e-6, max_iter=2000, epochs=20, batch_videos=256,
                 learning_rate=1e-2, chunk_videos=1024):
  """`linear_probe.linear_probe`'s contract solved in JAX, with the same result dict.

  Args beyond the SVM's: `solver` 'lbfgs' or 'adam'; `tol`, `max_iter` for L-BFGS (gradient
  norm of the objective / (C·n), relative to its norm at 0); `epochs`, `batch_videos`,
  `learning_rate` for Adam; `chunk_videos` bounds the host and accelerator memory of statistics
  and scoring. Features should be float32 (then used as they are; an np.memmap is fine with
  'adam').
  """
  if solver not in ('lbfgs', 'adam'):
    raise ValueError(f"solver must be 'lbfgs' or 'adam', got {solver!r}")
  train_features = sk_probe.as_clips(train_features)
  test_features = sk_probe.as_clips(test_features)
  train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
  classes = np.unique(train_labels)
  if len(classes) < 2:
    raise ValueError(f'a linear probe needs at least 2 classes, got {classes}')
  columns = np.searchsorted(classes, train_labels).astype(np.int32)
  fit = _make_fit(solver, train_features, columns, dict(
      tol=tol, max_iter=max_iter, epochs=epochs, batch_videos=batch_videos,
      learning_rate=learning_rate, seed=seed))
  cv_top1, cv_folds = None, 0
  if c is None and len(c_grid) == 1:
    c = c_grid[0]
  elif c is None:
    c, cv_top1, cv_folds = choose_c(fit, train_features, columns, c_grid, folds=folds,
                                    seed=seed, chunk_videos=chunk_videos)
  all_videos = np.arange(len(train_labels))
  stats = feature_stats(train_features, all_videos, chunk_videos)
  params = fit(_zeros(train_features.shape[-1], len(classes)), stats, all_videos, c)
  scores = video_scores(params, stats, test_features, chunk_videos=chunk_videos)
  return sk_probe.probe_result(scores, classes, train_features.shape, test_features.shape,
                               train_labels, test_labels, c=c, c_grid=c_grid, cv_top1=cv_top1,
                               cv_folds=cv_folds, solver=f'jax_{solver}')


def _make_fit(solver, features, columns, options):
  """fit(params, stats, videos, c) -> params, warm-started from `params`."""
  if solver == 'adam':
    return lambda params, stats, videos, c: _fit_adam(
        params, stats, features, columns, videos, c, epochs=options['epochs'],
        batch_videos=options['batch_videos'], learning_rate=options['learning_rate'],
        seed=options['seed'])
  num_videos, num_clips, dim = features.shape
  x = jax.device_put(np.asarray(features, np.float32).reshape(num_videos * num_clips, dim))
  targets = jnp.asarray(np.repeat(columns, num_clips))

  def fit(params, stats, videos, c):
    mask = np.zeros(num_videos, np.float32)
    mask[videos] = 1.0  # Held-out videos stay on the device with weight 0: no copy.
    return _fit_lbfgs(params, stats, x, targets, jnp.asarray(np.repeat(mask, num_clips)), c,
                      options['tol'], options['max_iter'])

  return fit
