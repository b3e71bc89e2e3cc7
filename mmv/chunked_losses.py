"""NCE and MIL-NCE under `jax.shard_map`, without a global B×B similarity on any device.

The dense losses (`mmv.losses`) let XLA gather the embeddings and build the [B, B(·K)]
similarities; at B = 16,384 that is gigabytes per device. Here each of the n devices keeps its
own b = B/n examples, and the candidates y (with their masks) travel around a ring of devices
with `ppermute`: after n−1 hops every device has met every candidate, and a device never holds
more than a [b, c, K] block of similarities (c = `chunk_size` candidates at a time).

For example i the denominator is one log-sum-exp over two sets (`mmv.losses`):
  rows: s(x_i, y_j^k) for every valid j, k (the positives included),
  cols: s(x_j, y_i^k) for every valid j ≠ i, k (i's captions as negatives of other videos).
Both come from the same block s[i, j, k] = <x̂_i, ŷ_j^k>/τ computed where x_i lives: the row
sums stay there, the column sums of the visiting candidates travel on with them and reach their
owner after the last hop. Log-sum-exps are accumulated online (running max and sum of exps).

Gradients come from a custom VJP that sends the candidates around once more and recomputes each
block from the saved denominators, as FlashAttention does, instead of storing the blocks; the
candidates' gradients travel with them back to their owner. Memory per device is
O(b·K·D + b·c·K): linear in the global batch. Values and gradients equal the dense losses
(tests/test_chunked_losses.py).
"""

import functools
import math

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from mmv import losses


def _ring(x, axes, n):
  """Sends x one hop along the ring: device i → i+1 (mod n), over the linearised `axes`."""
  return jax.lax.ppermute(x, axes, perm=[(i, (i + 1) % n) for i in range(n)])


def _pieces(tree, c):
  """[b, ...] → [b/c, c, ...] for every leaf, for a scan over pieces of c candidates."""
  return jax.tree.map(lambda a: a.reshape((a.shape[0] // c, c) + a.shape[1:]), tree)


def _whole(tree):
  return jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), tree)


def _varying(tree, axes):
  """Marks per-device values created inside shard_map (scan carries must be typed so)."""
  return jax.tree.map(lambda a: jax.lax.pcast(a, axes, to='varying'), tree)


def _lse_init(b, axes):
  """Running log-sum-exp state (max, sum of exp(· − max)) of b empty sets."""
  return _varying((jnp.full((b,), losses.NEG_INF, jnp.float32), jnp.zeros((b,), jnp.float32)),
                  axes)


def _lse_add(state, s, valid, axis, keep):
  """Adds the valid entries of block `s`, reduced over `axis`, to the running state."""
  m, total = state
  s = jnp.where(valid, s, losses.NEG_INF)
  new_m = jnp.maximum(m, jnp.max(s, axis=axis))
  total = total * jnp.exp(m - new_m) + jnp.sum(
      jnp.exp(s - jnp.expand_dims(new_m, [a for a in range(3) if a != keep])), axis=axis)
  return new_m, total


def _lse_value(state):
  m, total = state
  return m + jnp.log(total)


def _block(xs, x_mask, ids, yc, yc_mask, first_id):
  """Similarities [b, c, K] of the local rows with c candidates whose ids start at `first_id`,
  and where they count as rows (any j) and as columns (j ≠ i)."""
  s = jnp.einsum('id,jkd->ijk', xs, yc)
  row_valid = (x_mask > 0)[:, None, None] & (yc_mask > 0)[None]
  cand_ids = first_id + jnp.arange(yc.shape[0])
  col_valid = row_valid & (ids[:, None] != cand_ids[None, :])[:, :, None]
  return s, row_valid, col_valid


def _visit_all(visit, carry, candidates, travelling, axes, n):
  """Calls `visit(carry, candidates, travelling, owner)` once for each device's candidates.

  The candidates hop along the ring between visits; `travelling` (per-candidate results) hops
  with them, and once more after the last visit, which brings it back to its owner.
  """
  p = jax.lax.axis_index(axes)

  def hop(state, t):
    carry, candidates, travelling = state
    carry, travelling = visit(carry, candidates, travelling, (p - t) % n)
    return (carry,) + _ring((candidates, travelling), axes, n), None

  (carry, candidates, travelling), _ = jax.lax.scan(
      hop, (carry, candidates, travelling), jnp.arange(n - 1))
  carry, travelling = visit(carry, candidates, travelling, (p - (n - 1)) % n)
  return carry, _ring(travelling, axes, n)


def _scan_pieces(fn, carry, per_candidate, c):
  """Scans `fn(carry, (first, piece...)) -> (carry, out)` over pieces of c candidates."""
  num = jax.tree.leaves(per_candidate)[0].shape[0] // c
  carry, out = jax.lax.scan(fn, carry, (jnp.arange(num) * c,) + _pieces(per_candidate, c))
  return carry, _whole(out)


def _denominators(xs, y, x_mask, y_mask, axes, n, chunk):
  """log(rows_i + cols_i) of the local examples i (see the module docstring)."""
  b, c = xs.shape[0], min(chunk, xs.shape[0])
  ids = jax.lax.axis_index(axes) * b + jnp.arange(b)

  def visit(rows, candidates, cols, owner):
    def piece(rows, inputs):
      first, yc, yc_mask, cols_c = inputs
      s, row_valid, col_valid = _block(xs, x_mask, ids, yc, yc_mask, owner * b + first)
      rows = _lse_add(rows, s, row_valid, axis=(1, 2), keep=0)
      return rows, _lse_add(cols_c, s, col_valid, axis=(0, 2), keep=1)

    return _scan_pieces(piece, rows, candidates + (cols,), c)

  rows, cols = _visit_all(visit, _lse_init(b, axes), (y, y_mask), _lse_init(b, axes), axes, n)
  return jnp.logaddexp(_lse_value(rows), _lse_value(cols))


def _denominator_grads(xs, y, x_mask, y_mask, denominators, g, axes, n, chunk):
  """Gradients of Σ_i g_i·denominator_i with respect to xs and y.

  d/ds(x_i, y_j^k) = g_i·e^{s − D_i} (a row of i) + g_j·e^{s − D_j} (a column of j, j ≠ i),
  recomputed block by block; D_j and g_j travel with the candidates, and so does dy.
  """
  b, c = xs.shape[0], min(chunk, xs.shape[0])
  ids = jax.lax.axis_index(axes) * b + jnp.arange(b)

  def visit(dxs, candidates, dy, owner):
    def piece(dxs, inputs):
      first, yc, yc_mask, dc, gc, dyc = inputs
      s, row_valid, col_valid = _block(xs, x_mask, ids, yc, yc_mask, owner * b + first)
      # Where an entry is valid, it is part of that log-sum-exp, so the exponent is ≤ 0.
      ds = (jnp.where(row_valid, g[:, None, None] * jnp.exp(s - denominators[:, None, None]), 0)
            + jnp.where(col_valid, gc[None, :, None] * jnp.exp(s - dc[None, :, None]), 0))
      dxs = dxs + jnp.einsum('ijk,jkd->id', ds, yc)
      return dxs, dyc + jnp.einsum('ijk,id->jkd', ds, xs)

    return _scan_pieces(piece, dxs, candidates + (dy,), c)

  zeros = _varying((jnp.zeros(xs.shape, xs.dtype), jnp.zeros(y.shape, y.dtype)), axes)
  return _visit_all(visit, zeros[0], (y, y_mask, denominators, g), zeros[1], axes, n)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _ring_denominators(xs, y, x_mask, y_mask, axes, n, chunk):
  return _denominators(xs, y, x_mask, y_mask, axes, n, chunk)


def _ring_denominators_fwd(xs, y, x_mask, y_mask, axes, n, chunk):
  d = _denominators(xs, y, x_mask, y_mask, axes, n, chunk)
  return d, (xs, y, x_mask, y_mask, d)


def _ring_denominators_bwd(axes, n, chunk, residuals, g):
  xs, y, x_mask, y_mask, d = residuals
  dxs, dy = _denominator_grads(xs, y, x_mask, y_mask, d, g, axes, n, chunk)
  return dxs, dy, jnp.zeros_like(x_mask), jnp.zeros_like(y_mask)


_ring_denominators.defvjp(_ring_denominators_fwd, _ring_denominators_bwd)


def _local_mil_nce(x, y, x_mask, y_mask, *, temperature, axes, n, chunk):
  """The per-device body: the mean over the global batch of denominator − numerator."""
  xs = losses.l2_normalize(x) / temperature
  yn = losses.l2_normalize(y)
  denominators = _ring_denominators(xs, yn, x_mask, y_mask, axes, n, chunk)
  positives = jnp.einsum('id,ikd->ik', xs, yn)
  positives = jnp.where((x_mask[:, None] * y_mask) > 0, positives, losses.NEG_INF)
  numerators = jax.nn.logsumexp(positives, axis=1)
  example_mask = x_mask * (jnp.sum(y_mask, axis=1) > 0)
  total = jax.lax.psum(jnp.sum(example_mask * (denominators - numerators)), axes)
  count = jax.lax.psum(jnp.sum(example_mask), axes)
  return total / jnp.maximum(count, 1.0)


def mil_nce(x, y, *, mesh, axes, temperature=0.07, mask=None, y_mask=None, chunk_size=1024):
  """`losses.mil_nce` of x [B, D] and y [B, K, D] with the batch split over mesh `axes`.

  Each device handles its B/n examples; `chunk_size` candidates are compared at a time, so a
  device holds [B/n, chunk_size, K] similarities at most. B/n must be a multiple of the chunk
  size when it is larger than it.
  """
  b, k, _ = y.shape
  axes = tuple(axes)
  n = math.prod(mesh.shape[a] for a in axes)
  local = b // n
  if b % n or (local > chunk_size and local % chunk_size):
    raise ValueError(f'chunked loss: batch {b} must split into {n} equal parts, each a '
                     f'multiple of chunk_size={chunk_size} when larger than it')
  x_mask = jnp.ones((b,), jnp.float32) if mask is None else mask.astype(jnp.float32)
  y_mask = jnp.ones((b, k), jnp.float32) if y_mask is None else y_mask.astype(jnp.float32)
  body = functools.partial(_local_mil_nce, temperature=temperature, axes=axes, n=n,
                           chunk=chunk_size)
  spec = P(axes)
  return jax.shard_map(body, mesh=mesh, in_specs=(spec,) * 4, out_specs=P())(
      x, y, x_mask, y_mask)


def nce(x, y, *, mesh, axes, temperature=0.07, mask=None, y_mask=None, chunk_size=1024):
  """`losses.nce` of x [B, D] and y [B, D]: MIL-NCE with one candidate, which exists where
  `y_mask` says (default: where x does)."""
  mask = jnp.ones((x.shape[0],), jnp.float32) if mask is None else mask
  y_mask = mask if y_mask is None else y_mask
  return mil_nce(x, y[:, None], mesh=mesh, axes=axes, temperature=temperature, mask=mask,
                 y_mask=y_mask[:, None], chunk_size=chunk_size)
