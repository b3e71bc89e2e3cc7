"""GDT's loss against a numpy transcription of the reference's code (facebookresearch/GDT
main_gdt.py train_one_epoch, gdt_helper.py get_pos_neg / get_loss / get_losses) run with one
example per GPU, for every hypothesis."""

import chex
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

from mmv import gdt_loss
from mmv import sharding

T = 0.07
B, D = 5, 4


def _ce(q, k, noise):
  """gdt_helper.get_loss for one query: logits [q·k, q·noise...] / t, label 0."""
  logits = np.concatenate([[q @ k], noise @ q]) / T
  m = logits.max()
  return -(logits[0] - m - np.log(np.exp(logits - m).sum()))


def _pos_neg(hyp, i, f1, f2, valid):
  """get_pos_neg on the GPU holding example i alone; f = (video [B, D], audio [B, D])."""
  transf = {'i': 'invariant', 'v': 'variant'}.get(hyp[0], 'basecase')
  v, a = f1[0][i], f1[1][i]
  if transf == 'invariant':
    v_pos, a_pos = f2[1][i], f2[0][i]
  else:
    v_pos, a_pos = a, v
  others = [j for j in range(B) if j != i and valid[j]]
  if transf == 'invariant':  # f2 is always given with it.
    a_neg = [f2[0][j] for j in others] + [f1[0][j] for j in others]
    v_neg = [f2[1][j] for j in others] + [f1[1][j] for j in others]
  else:
    a_neg = [f1[0][j] for j in others] + ([f2[0][j] for j in others] if f2 else [])
    v_neg = [f1[1][j] for j in others] + ([f2[1][j] for j in others] if f2 else [])
  if transf == 'variant':
    a_neg, v_neg = a_neg + [f2[0][i]], v_neg + [f2[1][i]]
  return v, a, v_pos, a_pos, np.array(v_neg).reshape(-1, D), np.array(a_neg).reshape(-1, D)


def _losses(hyp, f1, f2, valid, pair=True):
  """get_losses(pairs1, pairs2) averaged over the (valid) GPUs, each holding one example."""
  total = []
  for i in range(B):
    if not valid[i]:
      continue
    p1 = _pos_neg(hyp, i, f1, f2 if pair else None, valid)
    l1 = [_ce(p1[0], p1[2], p1[4]), _ce(p1[1], p1[3], p1[5])]
    if not pair:
      total.append(0.5 * sum(l1))
      continue
    p2 = _pos_neg(hyp, i, f2, f1, valid)
    total.append(0.25 * (sum(l1) + _ce(p2[0], p2[2], p2[4]) + _ce(p2[1], p2[3], p2[5])))
  return np.mean(total)


def _reference(hypothesis, f, valid):
  """main_gdt.py's hypothesis dispatch; f: view name → (video, audio)."""
  c, r, s, sr = f['clip'], f.get('reversed'), f.get('shifted'), f.get('shifted_reversed')
  if hypothesis == 1:
    return _losses('basecase', c, None, valid, pair=False)
  if hypothesis in (2, 3, 4, 5):
    other = r if hypothesis in (2, 3) else s
    hyp = {2: 'vtime', 3: 'itime', 4: 'vasync', 5: 'iasync'}[hypothesis]
    loss = _losses(hyp, c, other, valid)
    if hypothesis in (3, 5):
      loss = 0.5 * (loss + _losses('basecase', c, other, valid))
    return loss
  hyp1, hyp2 = {6: ('vtime', 'vasynced'), 7: ('itime', 'vasynced'), 8: ('vtime', 'iasynced'),
                9: ('itime', 'iasynced')}[hypothesis]
  losses = [_losses(hyp1, c, r, valid), _losses(hyp1, s, sr, valid),
            _losses(hyp2, c, s, valid), _losses(hyp2, r, sr, valid)]
  if hyp1 == 'itime':
    losses.append(_losses('basecase', c, r, valid))
  if hyp2 == 'iasynced':
    losses.append(_losses('basecase', c, s, valid))
  return np.mean(losses)


def _embeddings(seed):
  rng = np.random.default_rng(seed)
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  # Correlated views, so that positives and negatives give clearly different logits.
  base = rng.standard_normal((B, D))
  emb = {}
  for n, view in enumerate(('clip', 'reversed', 'shifted', 'shifted_reversed')):
    for modality in ('video', 'audio'):
      emb[f'{modality}_{view}'] = unit(base + 0.7 * rng.standard_normal((B, D)) + 0.3 * n).astype(
          np.float32)
  return emb


@pytest.mark.slow
@pytest.mark.parametrize('hypothesis', range(1, 10))
def test_loss_equals_the_references_code(hypothesis):
  emb = _embeddings(hypothesis)
  batch = {'mask': np.ones(B, np.float32)}
  loss, terms = jax.jit(lambda e, b: gdt_loss.gdt_loss(e, b, hypothesis=hypothesis))(emb, batch)
  views = {v: (emb[f'video_{v}'], emb[f'audio_{v}']) for v in gdt_loss.views(hypothesis)}
  np.testing.assert_allclose(loss, _reference(hypothesis, views, [True] * B), rtol=1e-5)
  assert len(terms) == {1: 1, 2: 1, 3: 2, 4: 1, 5: 2, 6: 4, 7: 5, 8: 5, 9: 6}[hypothesis]
  assert set(gdt_loss.views(hypothesis)) == {
      1: {'clip'}, 2: {'clip', 'reversed'}, 3: {'clip', 'reversed'}, 4: {'clip', 'shifted'},
      5: {'clip', 'shifted'}}.get(hypothesis, {'clip', 'reversed', 'shifted', 'shifted_reversed'})


@pytest.mark.parametrize('hypothesis', [1, 3, 8])
def test_padding_and_missing_audio_leave_the_batch(hypothesis):
  emb = _embeddings(10 + hypothesis)
  mask = np.array([1, 1, 0, 1, 1], np.float32)
  audio_mask = np.array([1, 1, 1, 1, 0], np.float32)
  loss, _ = gdt_loss.gdt_loss(emb, {'mask': mask, 'audio_mask': audio_mask},
                              hypothesis=hypothesis)
  views = {v: (emb[f'video_{v}'], emb[f'audio_{v}']) for v in gdt_loss.views(hypothesis)}
  np.testing.assert_allclose(loss, _reference(hypothesis, views, mask * audio_mask > 0),
                             rtol=1e-5)


def test_variant_and_invariant_differ_only_in_the_transformed_pair():
  """Where the reversed view's keys equal the clip's, 'variant' adds exactly one candidate
  (the query's own key again) to 'basecase', and 'invariant' equals 'basecase'."""
  emb = _embeddings(3)
  for m in ('video', 'audio'):
    emb[f'{m}_reversed'] = emb[f'{m}_clip']
  valid = jnp.ones(B)
  base = gdt_loss.pair_term(emb, 'basecase', 'clip', 'reversed', valid, T)
  inv = gdt_loss.pair_term(emb, 'invariant', 'clip', 'reversed', valid, T)
  var = gdt_loss.pair_term(emb, 'variant', 'clip', 'reversed', valid, T)
  np.testing.assert_allclose(inv, base, rtol=1e-6)
  v, a = emb['video_clip'], emb['audio_clip']
  expected = []
  for q, k in ((v, a), (a, v)):
    s = q @ k.T / T
    for i in range(B):
      others = np.concatenate([s[i, :], np.delete(s[i], i), [s[i, i]]])
      expected.append(np.log(np.exp(others).sum()) - s[i, i])
  np.testing.assert_allclose(var, np.mean(expected), rtol=1e-5)


def test_keys_take_no_gradient():
  """Hypothesis 1: d loss / d audio is that of the audio queries' term alone."""
  emb = _embeddings(4)
  batch = {'mask': jnp.ones(B)}
  grad = jax.grad(lambda e: gdt_loss.gdt_loss(e, batch, hypothesis=1)[0])(
      {k: emb[k] for k in ('video_clip', 'audio_clip')})
  audio_term = jax.grad(lambda a: 0.5 * gdt_loss.query_nce(
      a, emb['video_clip'], None, 'basecase', batch['mask'], T))(emb['audio_clip'])
  np.testing.assert_allclose(grad['audio_clip'], audio_term, rtol=1e-5, atol=1e-7)


def test_unknown_hypothesis_is_refused():
  with pytest.raises(ValueError, match='hypothesis 10'):
    gdt_loss.gdt_loss({}, {'mask': jnp.ones(2)}, hypothesis=10)


@pytest.mark.slow
def test_sharded_loss_equals_single_device():
  """Hypothesis 9 (all views, every kind of pair) on 32 examples split over 8 devices: value and
  gradients equal one device's, and the negatives span the global batch."""
  chex.assert_devices_available(8, 'cpu')
  rng = np.random.default_rng(0)
  emb = {f'{m}_{v}': rng.standard_normal((32, 6)).astype(np.float32)
         for m in ('video', 'audio') for v in gdt_loss.views(9)}
  emb = {k: v / np.linalg.norm(v, axis=-1, keepdims=True) for k, v in emb.items()}
  batch = {'mask': (np.arange(32) % 7 != 3).astype(np.float32),
           'audio_mask': (np.arange(32) % 5 != 1).astype(np.float32)}
  grad_fn = jax.value_and_grad(lambda e, b: gdt_loss.gdt_loss(e, b, hypothesis=9)[0])
  single = jax.jit(grad_fn)(*jax.device_put((emb, batch), jax.devices()[0]))
  mesh = sharding.make_mesh()
  inputs = jax.device_put((emb, batch), NamedSharding(mesh, P('data')))
  assert len(inputs[1]['mask'].addressable_shards) == 8
  multi = jax.jit(grad_fn, out_shardings=NamedSharding(mesh, P()))(*inputs)
  chex.assert_trees_all_close(jax.device_get(multi), jax.device_get(single), atol=1e-6,
                              rtol=1e-5)
  part = grad_fn({k: v[:4] for k, v in emb.items()}, {k: v[:4] for k, v in batch.items()})[0]
  assert abs(float(part) - float(single[0])) > 1e-3
