"""k-means (Lloyd's algorithm) in JAX, with the points split over the devices of a mesh.

`fit(features, k, mesh=...)` clusters features [N, D] (XDC's pseudo-labels, `mmv.methods.xdc`).
The rows are split over every device of the mesh along its batch axes (`mmv.sharding`), as a
training batch is; the centroids [k, D] are replicated. Each iteration, under one jit:
  assignment   each device computes the squared distances of its rows to the k centroids and
               their nearest centroid (no communication);
  update       the per-cluster sums and counts are one-hot matrix products contracted over the
               split row axis: XLA turns them into one all-reduce of [k, D] + [k].
The algorithm follows scikit-learn's `KMeans(algorithm='lloyd', n_init=1)` step for step, so that
it can be checked against it (tests/test_kmeans.py):
  * init: 'k-means++' (Arthur & Vassilvitskii 2007, one candidate per centre; scikit-learn's
    default is its greedy variant with 2 + log k candidates), 'random' (k distinct rows), or a
    given [k, D] array; drawn from `seed`, the same on any number of devices.
  * stop after `iterations`, or when no label changed, or when the summed squared centroid shift
    is ≤ tol × the mean per-dimension variance of the features (scikit-learn's relative tol).
  * an empty cluster is re-seeded, as scikit-learn does, with the point farthest from its own
    centroid (the i-th empty cluster, in index order, takes the i-th farthest point), which
    leaves its old cluster.
  * the labels returned are those of the centroids returned (a last assignment step).
Rows are padded to a multiple of the devices with weight 0: padding never counts, never seeds.
Distances use float32 with the matrix products at HIGHEST precision (TPUs default to bfloat16).
Memory: each device holds its rows' [N / devices, k] distances at once.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from mmv import sharding as shard_lib

INITS = ('k-means++', 'random')
_HIGHEST = jax.lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class Result:
  centroids: np.ndarray  # float32 [k, D]
  labels: np.ndarray  # int32 [N]
  inertia: float  # Sum of squared distances of the points to their centroids.
  iterations: int  # Update steps run.


def _sq_distances(x, centroids):
  """[n, D], [k, D] → [n, k] squared Euclidean distances (≥ 0)."""
  cross = jnp.dot(x, centroids.T, precision=_HIGHEST)
  d2 = jnp.sum(x * x, 1)[:, None] - 2 * cross + jnp.sum(centroids * centroids, 1)[None]
  return jnp.maximum(d2, 0)


def _assign(x, centroids):
  """(labels [n], squared distance to the own centroid [n])."""
  d2 = _sq_distances(x, centroids)
  labels = jnp.argmin(d2, 1).astype(jnp.int32)
  return labels, jnp.take_along_axis(d2, labels[:, None], 1)[:, 0]


def _rows(x, indices):
  """x[indices] as a one-hot product: a reduction over the split row axis, not a gather."""
  onehot = (jnp.arange(x.shape[0])[None] == indices[:, None]).astype(x.dtype)
  return jnp.dot(onehot, x, precision=_HIGHEST)


def _sample(key, weights):
  """An index drawn with probability ∝ `weights` (inverse CDF of one uniform number, so the
  draw does not depend on how many zero-weight padding rows follow)."""
  cdf = jnp.cumsum(weights)
  u = jax.random.uniform(key, dtype=cdf.dtype) * cdf[-1]
  return jnp.minimum(jnp.sum(cdf <= u), weights.shape[0] - 1)


def _kmeans_plus_plus(key, x, w, k):
  first_key, key = jax.random.split(key)
  first = _rows(x, _sample(first_key, w)[None])
  d2 = _sq_distances(x, first)[:, 0]
  centroids = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(first[0])

  def pick(i, carry):
    centroids, d2 = carry
    c = _rows(x, _sample(jax.random.fold_in(key, i), d2 * w)[None])
    return centroids.at[i].set(c[0]), jnp.minimum(d2, _sq_distances(x, c)[:, 0])

  return jax.lax.fori_loop(1, k, pick, (centroids, d2))[0]


def _reseed_empty(x, w, labels, d2, sums, counts):
  """Per-cluster sums and counts with each empty cluster given the farthest remaining point."""
  k = counts.shape[0]
  empty = counts == 0
  far = jax.lax.top_k(jnp.where(w > 0, d2, -1.0), k)[1]  # Farthest first.
  take = far[jnp.cumsum(empty) - 1]  # The i-th empty cluster's point.
  moved = _rows(x, take) * w[take][:, None]
  old = labels[take]
  sums = sums.at[old].add(-jnp.where(empty[:, None], moved, 0))
  counts = counts.at[old].add(-jnp.where(empty, w[take], 0))
  return jnp.where(empty[:, None], moved, sums), jnp.where(empty, w[take], counts)


def _update(x, w, centroids):
  """One Lloyd step: (new centroids, labels of the old ones)."""
  k = centroids.shape[0]
  labels, d2 = _assign(x, centroids)
  onehot = jax.nn.one_hot(labels, k, dtype=x.dtype) * w[:, None]
  sums = jnp.dot(onehot.T, x, precision=_HIGHEST)  # Contracts the split axis: an all-reduce.
  counts = jnp.sum(onehot, 0)
  sums, counts = jax.lax.cond(jnp.any(counts == 0), _reseed_empty,
                              lambda *a: a[-2:], x, w, labels, d2, sums, counts)
  return sums / counts[:, None], labels


@functools.partial(jax.jit, static_argnames=('iterations',))
def _lloyd(x, w, centroids, tol, *, iterations):
  def cond(carry):
    i, _, _, done = carry
    return (i < iterations) & ~done

  def body(carry):
    i, centroids, old_labels, _ = carry
    new, labels = _update(x, w, centroids)
    same = jnp.all((labels == old_labels) | (w == 0))
    shift = jnp.sum((new - centroids) ** 2)
    return i + 1, new, labels, same | (shift <= tol)

  start = (jnp.int32(0), centroids, jnp.full(x.shape[:1], -1, jnp.int32), jnp.bool_(False))
  i, centroids, _, _ = jax.lax.while_loop(cond, body, start)
  labels, d2 = _assign(x, centroids)
  return centroids, labels, jnp.sum(d2 * w), i


@jax.jit
def _tolerance(x, w, tol):
  n = jnp.sum(w)
  mean = jnp.sum(x * w[:, None], 0) / n
  return tol * jnp.mean(jnp.sum(((x - mean) ** 2) * w[:, None], 0) / n)


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _initial(init, key, x, w, k, n):
  if init == 'k-means++':
    return _kmeans_plus_plus(key, x, w, k)
  return _rows(x, jax.random.choice(key, n, (k,), replace=False))


def fit(features, k, *, mesh=None, seed=0, init='k-means++', iterations=100, tol=1e-4):
  """k-means of `features` [N, D] (numpy, single process) into `k` clusters → `Result`.

  `mesh`: the rows are split over all its devices (None: a mesh of every device). `init`:
  'k-means++', 'random' or a [k, D] array. See the module doc for the rest.
  """
  features = np.asarray(features, np.float32)
  if features.ndim != 2:
    raise ValueError(f'k-means takes features [N, D], got shape {features.shape}')
  n = features.shape[0]
  if not 1 <= k <= n:
    raise ValueError(f'k={k} clusters need 1 ≤ k ≤ N = {n} points')
  if iterations < 1 or tol < 0:
    raise ValueError(f'iterations={iterations} must be ≥ 1 and tol={tol} ≥ 0')
  mesh = mesh or shard_lib.make_mesh()
  pad = -n % mesh.devices.size
  rows = shard_lib.batch_sharding(mesh)
  x = jax.device_put(np.pad(features, ((0, pad), (0, 0))), rows)
  w = jax.device_put(np.pad(np.ones(n, np.float32), (0, pad)), rows)
  replicated = shard_lib.replicated(mesh)
  if isinstance(init, str):
    if init not in INITS:
      raise ValueError(f'init={init!r}: choose from {INITS} or give a [k, D] array')
    centroids = jax.device_put(_initial(init, jax.random.key(seed), x, w, k, n), replicated)
  else:
    centroids = np.asarray(init, np.float32)
    if centroids.shape != (k, features.shape[1]):
      raise ValueError(f'init centroids {centroids.shape} are not [k, D] = '
                       f'{(k, features.shape[1])}')
    centroids = jax.device_put(centroids, replicated)
  tol = _tolerance(x, w, tol) if tol else 0.0
  centroids, labels, inertia, i = jax.device_get(
      _lloyd(x, w, centroids, tol, iterations=iterations))
  return Result(centroids=np.asarray(centroids), labels=np.asarray(labels)[:n],
                inertia=float(inertia), iterations=int(i))
