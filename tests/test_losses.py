"""NCE and MIL-NCE: their formulas (`mmv.losses`), and sharded over 8 devices = one device."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from mmv import losses
from mmv import sharding


def reference_nce(x, y, t, x_mask, y_mask):
  """The formula written out with loops, in float64: for each i with both x_i and y_i, −log of
  e^{s_ii} / (e^{s_ii} + Σ_{j≠i, y_j exists} e^{s(x_i,y_j)}
                       + Σ_{j≠i, x_j exists} e^{s(x_j,y_i)})."""
  x = x / np.linalg.norm(x, axis=1, keepdims=True)
  y = y / np.linalg.norm(y, axis=1, keepdims=True)
  e = np.exp(x.astype(np.float64) @ y.T.astype(np.float64) / t)
  terms = []
  for i in range(len(x)):
    if not (x_mask[i] and y_mask[i]):
      continue
    denom = e[i, i] + sum(e[i, j] for j in np.flatnonzero(y_mask) if j != i) + sum(
        e[j, i] for j in np.flatnonzero(x_mask) if j != i)
    terms.append(-np.log(e[i, i] / denom))
  return np.mean(terms)


def reference_mil_nce(x, y, t, mask, y_mask):
  x = x / np.linalg.norm(x, axis=-1, keepdims=True)
  y = y / np.linalg.norm(y, axis=-1, keepdims=True)
  e = np.exp(np.einsum('id,jkd->ijk', x, y).astype(np.float64) / t)
  terms = []
  b, k = y_mask.shape
  for i in range(b):
    if not mask[i] or not y_mask[i].any():
      continue
    pos = sum(e[i, i, c] for c in range(k) if y_mask[i, c])
    neg = 0.0
    for j in range(b):
      if j == i:
        continue
      neg += sum(e[i, j, c] for c in range(k) if y_mask[j, c])
      if mask[j]:
        neg += sum(e[j, i, c] for c in range(k) if y_mask[i, c])
    terms.append(-np.log(pos / (pos + neg)))
  return np.mean(terms)


def _inputs(b=16, k=3, d=8, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(b, d)).astype(np.float32)
  y = (x + rng.normal(size=(b, d))).astype(np.float32)
  z = (x[:, None] + rng.normal(size=(b, k, d))).astype(np.float32)
  mask = (rng.uniform(size=b) > 0.25).astype(np.float32)
  z_mask = (rng.uniform(size=(b, k)) > 0.3).astype(np.float32)
  z_mask[:3] = 0  # Examples without text.
  return x, y, z, mask, z_mask


@pytest.mark.parametrize('masks', ['none', 'padding', 'padding_and_audio'])
def test_nce_matches_formula(masks):
  x, y, _, mask, _ = _inputs()
  audio = mask * (np.arange(16) % 3 != 0)  # Some real clips without audio.
  x_mask, y_mask = {'none': (np.ones_like(mask),) * 2, 'padding': (mask, mask),
                    'padding_and_audio': (mask, audio)}[masks]
  got = losses.nce(x, y, temperature=0.07, mask=x_mask, y_mask=y_mask)
  np.testing.assert_allclose(got, reference_nce(x, y, 0.07, x_mask, y_mask), rtol=1e-5)


@pytest.mark.parametrize('masked', [False, True])
def test_mil_nce_matches_formula(masked):
  x, _, z, mask, z_mask = _inputs()
  if not masked:
    mask, z_mask = np.ones_like(mask), np.ones_like(z_mask)
  got = losses.mil_nce(x, z, temperature=0.07, mask=mask, y_mask=z_mask)
  np.testing.assert_allclose(got, reference_mil_nce(x, z, 0.07, mask, z_mask), rtol=1e-5)


def test_masked_example_is_as_if_absent():
  x, y, z, _, _ = _inputs()
  mask = np.ones(16, np.float32)
  mask[5] = 0
  keep = np.arange(16) != 5
  np.testing.assert_allclose(losses.nce(x, y, mask=mask), losses.nce(x[keep], y[keep]),
                             rtol=1e-6)
  z_mask = np.ones((16, 3), np.float32)
  z_mask[5] = 0
  np.testing.assert_allclose(losses.mil_nce(x, z, mask=mask, y_mask=z_mask),
                             losses.mil_nce(x[keep], z[keep]), rtol=1e-6)
  # A clip without text still has a video: it is a negative for the other clips' captions.
  text_only = losses.mil_nce(x, z, y_mask=z_mask)
  assert abs(float(text_only) - float(losses.mil_nce(x[keep], z[keep]))) > 1e-3


def _modality_batch(b=16, seed=1):
  """Padding (mask 0) at the end, and among the real clips some without audio, some without
  text and one with neither."""
  rng = np.random.default_rng(seed)
  mask = (np.arange(b) < b - 3).astype(np.float32)
  audio_mask = np.ones(b, np.float32)
  audio_mask[[1, 4, 7]] = 0
  text_mask = (rng.uniform(size=(b, 3)) > 0.3).astype(np.float32)
  text_mask[:, 0] = 1
  text_mask[[2, 4, 9]] = 0
  return {'mask': mask, 'audio_mask': audio_mask, 'text_mask': text_mask}


def _terms(x, y, z, batch, **kw):
  emb = {'video_va': x, 'audio_va': y, 'video_vt': x * 2.0, 'text_vt': z}
  return losses.mmv_loss(emb, batch, temperature=0.07, weight_va=1.0, weight_vt=0.5, **kw)[1]


def test_mmv_loss_terms_match_the_formula_with_missing_modalities():
  """A missing audio or text removes only the pairs that need it; padding removes everything."""
  x, y, z, _, _ = _inputs()
  batch = _modality_batch()
  terms = _terms(x, y, z, batch)
  mask, audio, text = batch['mask'], batch['audio_mask'], batch['text_mask']
  np.testing.assert_allclose(terms['loss_va'], reference_nce(x, y, 0.07, mask, mask * audio),
                             rtol=1e-5)
  np.testing.assert_allclose(terms['loss_vt'], reference_mil_nce(
      2.0 * x, z, 0.07, mask, text * mask[:, None]), rtol=1e-5)
  # The video of clip 1 (no audio) is still a negative of the other clips' audio; its audio,
  # and everything of the padding (13..15), is not there.
  other = np.random.default_rng(2).normal(size=(4, 8)).astype(np.float32)
  changed = lambda a, rows: np.where(np.isin(np.arange(16), rows)[:, None], other[:1], a)
  va = lambda x, y: float(_terms(x, y, z, batch)['loss_va'])
  assert abs(va(changed(x, [1]), y) - va(x, y)) > 1e-4
  np.testing.assert_allclose(va(x, changed(y, [1])), va(x, y), rtol=1e-6)
  np.testing.assert_allclose(va(changed(x, [13, 14, 15]), changed(y, [13, 14, 15])), va(x, y),
                             rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize('masked', [False, True])
def test_sharded_loss_equals_single_device(masked):
  """Value and gradients on a batch split over 8 devices equal those on one device."""
  chex.assert_devices_available(8, 'cpu')
  x, y, z, mask, z_mask = _inputs(b=32)
  if not masked:
    mask, z_mask = np.ones_like(mask), np.ones_like(z_mask)
  batch = (_modality_batch(b=32) if masked else
           {'mask': mask, 'audio_mask': np.ones_like(mask), 'text_mask': z_mask})

  def loss(x, y, z, batch):
    emb = {'video_va': x, 'audio_va': y, 'video_vt': x * 2.0, 'text_vt': z}
    total, terms = losses.mmv_loss(emb, batch, temperature=0.07, weight_va=1.0, weight_vt=0.5)
    return total, terms

  grad_fn = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)
  one = jax.devices()[0]
  single = jax.jit(grad_fn)(*jax.device_put((x, y, z, batch), one))

  mesh = sharding.make_mesh()
  assert mesh.devices.size == 8
  split = NamedSharding(mesh, P('data'))
  sharded_inputs = jax.device_put((x, y, z, batch), split)
  assert len(sharded_inputs[0].addressable_shards) == 8
  multi = jax.jit(grad_fn, out_shardings=NamedSharding(mesh, P()))(*sharded_inputs)
  chex.assert_trees_all_close(jax.device_get(multi), jax.device_get(single), atol=1e-5,
                              rtol=1e-5)
  # The negatives really span the batch: the loss of the first 4 examples alone differs.
  (part, _), _ = grad_fn(x[:4], y[:4], z[:4], {k: v[:4] for k, v in batch.items()})
  assert abs(float(part) - float(single[0][0])) > 1e-3


@pytest.mark.slow
def test_loss_gradients_are_finite_when_modalities_are_missing():
  x, y, z, _, _ = _inputs()
  mask = np.zeros(16, np.float32)
  mask[:2] = 1
  grads = jax.grad(lambda x, z: losses.mil_nce(x, z, mask=mask) + losses.nce(x, y, mask=mask),
                   argnums=(0, 1))(x, z)
  chex.assert_tree_all_finite(grads)
  np.testing.assert_array_equal(grads[0][2:], 0.0)  # Masked videos are no negatives.
  assert np.abs(np.asarray(grads[0][:2])).max() > 0
