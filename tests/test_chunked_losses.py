"""The chunked (ring) NCE / MIL-NCE: equal to the dense losses, with memory linear in the batch."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mmv import chunked_losses
from mmv import losses
from mmv import sharding
from tests import test_losses
from tests.test_losses import _inputs


def _mesh(data, fsdp):
  return Mesh(np.asarray(jax.devices()).reshape(data, fsdp), sharding.BATCH_AXES)


def _mmv_loss(nce_fn, mil_nce_fn, x, y, z, mask, y_mask, z_mask):
  return (nce_fn(x, y, mask=mask, y_mask=y_mask)
          + 0.5 * mil_nce_fn(2.0 * x, z, mask=mask, y_mask=z_mask))


@pytest.mark.parametrize('masked,chunk_size,mesh_shape', [
    (True, 2, (4, 2)),  # 4 examples per device in pieces of 2; batch over data and fsdp.
    (False, 1024, (8, 1)),  # One piece per device.
])
@pytest.mark.slow
def test_chunked_equals_dense_in_value_and_gradients(masked, chunk_size, mesh_shape):
  chex.assert_devices_available(8, 'cpu')
  x, y, z, mask, z_mask = _inputs(b=32)
  y_mask = mask * (np.arange(32) % 3 != 0)  # Some clips without audio: their video stays.
  if not masked:
    mask, y_mask, z_mask = np.ones_like(mask), np.ones_like(mask), np.ones_like(z_mask)
  mesh = _mesh(*mesh_shape)
  ring = dict(mesh=mesh, axes=sharding.BATCH_AXES, chunk_size=chunk_size)
  chunked = functools.partial(_mmv_loss, functools.partial(chunked_losses.nce, **ring),
                              functools.partial(chunked_losses.mil_nce, **ring))
  dense = functools.partial(_mmv_loss, losses.nce, losses.mil_nce)
  argnums = (0, 1, 2)
  expected = jax.jit(jax.value_and_grad(dense, argnums))(x, y, z, mask, y_mask, z_mask)
  inputs = jax.device_put((x, y, z, mask, y_mask, z_mask),
                          NamedSharding(mesh, P(sharding.BATCH_AXES)))
  got = jax.jit(jax.value_and_grad(chunked, argnums))(*inputs)
  chex.assert_trees_all_close(jax.device_get(got), jax.device_get(expected), atol=1e-5,
                              rtol=1e-5)
  assert np.abs(np.asarray(got[1][2])).max() > 1e-3  # The text gets gradients at all.


def test_chunked_mmv_loss_matches_the_formula_with_missing_modalities():
  """Through `mmv_loss` with the ring losses on 8 devices, against the numpy formula."""
  chex.assert_devices_available(8, 'cpu')
  x, y, z, _, _ = _inputs(b=32)
  batch = test_losses._modality_batch(b=32)
  mesh = _mesh(8, 1)
  ring = dict(mesh=mesh, axes=sharding.BATCH_AXES, chunk_size=2)
  inputs = jax.device_put((x, y, z, batch), NamedSharding(mesh, P(sharding.BATCH_AXES)))
  terms = jax.jit(functools.partial(
      test_losses._terms, nce_fn=functools.partial(chunked_losses.nce, **ring),
      mil_nce_fn=functools.partial(chunked_losses.mil_nce, **ring)))(*inputs)
  mask, audio, text = batch['mask'], batch['audio_mask'], batch['text_mask']
  np.testing.assert_allclose(terms['loss_va'], test_losses.reference_nce(
      x, y, 0.07, mask, mask * audio), rtol=1e-5)
  np.testing.assert_allclose(terms['loss_vt'], test_losses.reference_mil_nce(
      2.0 * x, z, 0.07, mask, text * mask[:, None]), rtol=1e-5)


def test_rejects_a_local_batch_that_does_not_split_into_chunks():
  x, y, _, _, _ = _inputs(b=48)  # 6 per device, chunks of 4.
  with pytest.raises(ValueError, match='chunk_size=4'):
    chunked_losses.nce(x, y, mesh=_mesh(8, 1), axes=sharding.BATCH_AXES, chunk_size=4)


def _temp_bytes(loss, batch, mesh):
  split = NamedSharding(mesh, P(sharding.BATCH_AXES))
  emb = jax.ShapeDtypeStruct((batch, 32), jnp.float32, sharding=split)
  compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(emb, emb).compile()
  return compiled.memory_analysis().temp_size_in_bytes


@pytest.mark.slow
def test_chunked_memory_grows_linearly_and_dense_quadratically():
  """XLA's memory analysis of the compiled programs (nothing runs): ×4 batch → ×4 vs ×16."""
  mesh = _mesh(8, 1)
  chunked = functools.partial(chunked_losses.nce, mesh=mesh, axes=sharding.BATCH_AXES,
                              chunk_size=64)
  dense = {b: _temp_bytes(losses.nce, b, mesh) for b in (1024, 4096)}
  ring = {b: _temp_bytes(chunked, b, mesh) for b in (1024, 4096)}
  assert dense[4096] / dense[1024] > 10
  assert ring[4096] / ring[1024] < 6
  assert ring[4096] < 4096 * 4096 * 4 / 8  # Less than one device's rows of the B×B matrix.
