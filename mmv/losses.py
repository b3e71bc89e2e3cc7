"""Contrastive losses of MMV (Alayrac et al. 2020) and MIL-NCE (Miech et al. 2020), pure
functions of global-batch embeddings.

Called under `jax.jit` on batch-sharded arrays, the similarity matrices span the global batch:
XLA gathers the embeddings across devices, so every example's negatives come from all devices.

NCE(video, audio), for each i with both a video and an audio:
  −log( e^{s_ii} / (e^{s_ii} + Σ_{j≠i, a_j exists} e^{s(v_i,a_j)}
                            + Σ_{j≠i, v_j exists} e^{s(v_j,a_i)}) )
MIL-NCE(video, K captions), for each i with a video and text:
  −log( P_i / (P_i + Σ_{j≠i, k: t_j^k exists} e^{s(v_i,t_j^k)}
                   + Σ_{j≠i, v_j exists, k: t_i^k exists} e^{s(v_j,t_i^k)}) ),
  P_i = Σ_{k: t_i^k exists} e^{s(v_i,t_i^k)},
with s(x, y) = <x/|x|, y/|y|> / temperature. A missing modality removes only the pairs that
need it: a clip without audio has no positive and its audio is no negative, but its video is
still a negative for the other clips' audio (and likewise for text). Padding has neither.
"""

import jax
import jax.numpy as jnp

NEG_INF = -1e30  # Finite, so fully masked rows give exp(-inf - max) = 0 without NaNs.


def l2_normalize(x, eps=1e-12):
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps))


def _masked_mean(values, mask):
  return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def nce(x, y, *, temperature=0.07, mask=None, y_mask=None):
  """Symmetric-denominator NCE between paired embeddings x [B, D] and y [B, D].

  `mask` [B] marks the x that exist (not padding), `y_mask` [B] the y that exist (default: where
  x does), e.g. the clips with audio. Returns the mean over the pairs where both exist. This is
  MIL-NCE with one candidate per example.
  """
  mask = jnp.ones((x.shape[0],), jnp.float32) if mask is None else mask
  y_mask = mask if y_mask is None else y_mask
  return mil_nce(x, y[:, None], temperature=temperature, mask=mask, y_mask=y_mask[:, None])


def mil_nce(x, y, *, temperature=0.07, mask=None, y_mask=None):
  """MIL-NCE between x [B, D] and K candidates y [B, K, D] per example.

  `mask` [B] marks the examples whose x exists; `y_mask` [B, K] marks the real candidates
  (an example without text has an all-zero row). Returns the mean over examples with both.
  """
  b, k, _ = y.shape
  x_mask = jnp.ones((b,), jnp.float32) if mask is None else mask.astype(jnp.float32)
  y_mask = jnp.ones((b, k), jnp.float32) if y_mask is None else y_mask.astype(jnp.float32)
  s = jnp.einsum('id,jkd->ijk', l2_normalize(x), l2_normalize(y)) / temperature
  valid = (x_mask[:, None, None] * y_mask[None, :, :]) > 0  # valid[i, j, k]
  eye = jnp.eye(b, dtype=bool)[:, :, None]
  positives = jnp.where(valid & eye, s, NEG_INF)
  numerator = jax.nn.logsumexp(positives.reshape(b, -1), axis=1)
  rows = jnp.where(valid, s, NEG_INF).reshape(b, -1)  # s(x_i, y_j^k), all j, k.
  # s(x_j, y_i^k) for j ≠ i: transpose the first two axes so row i holds column i.
  cols = jnp.where(valid & ~eye, s, NEG_INF).transpose(1, 0, 2).reshape(b, -1)
  denominator = jax.nn.logsumexp(jnp.concatenate([rows, cols], axis=1), axis=1)
  example_mask = x_mask * (jnp.sum(y_mask, axis=1) > 0)
  return _masked_mean(denominator - numerator, example_mask)


def mmv_loss(embeddings, batch, *, temperature, weight_va, weight_vt, nce_fn=nce,
             mil_nce_fn=mil_nce):
  """λ_va·NCE(video_va, audio_va) + λ_vt·MIL-NCE(video_vt, text_vt) and its terms.

  A model without an audio (text) tower has no audio_va (text_vt) embeddings: its loss is the
  other term alone (the paper's "VA only" NCE, MIL-NCE's video-text loss), and its terms lack
  `loss_va` (`loss_vt`). `batch['mask']` excludes padding; `audio_mask` and `text_mask`
  exclude missing modalities. `nce_fn` and `mil_nce_fn` compute the two terms (the dense ones
  here, or the chunked ones of `mmv.chunked_losses` with the same signature).
  """
  mask = batch['mask']
  terms = {}
  if 'audio_va' in embeddings:
    # A video exists wherever the example does; audio and text only where their masks say so.
    terms['loss_va'] = nce_fn(embeddings['video_va'], embeddings['audio_va'],
                              temperature=temperature, mask=mask,
                              y_mask=mask * batch['audio_mask'])
  if 'text_vt' in embeddings:
    terms['loss_vt'] = mil_nce_fn(embeddings['video_vt'], embeddings['text_vt'],
                                  temperature=temperature, mask=mask,
                                  y_mask=batch['text_mask'] * mask[:, None])
  if not terms:
    raise ValueError('no audio_va or text_vt embeddings: nothing to contrast the video with')
  weights = {'loss_va': weight_va, 'loss_vt': weight_vt}
  total = sum(weights[name] * value for name, value in terms.items())
  return total, terms
