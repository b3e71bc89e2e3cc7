"""GDT's generalised contrastive loss (Patrick et al. 2021), a pure function of global-batch
embeddings: under `jax.jit` on batch-sharded arrays the similarities span the global batch, so
negatives come from every device (as in `mmv.losses`).

Views of a record: 'clip', 'reversed' (R: time reversal), 'shifted' (S: another clip of the same
video) and 'shifted_reversed'. Each view has a video and an audio embedding (unit vectors).
A *pair term* P(kind, X, Y) over two views X, Y is the mean of four NCE terms, one per query
q ∈ {v^X, a^X, v^Y, a^Y}, whose keys are the other modality's embeddings k^X, k^Y:
  −log( e^{s(q_i, pos)} / Σ_{c ∈ C(i)} e^{s(q_i, c)} ),  s(x, y) = <x, y> / temperature,
with, for a query of view X (swap X and Y for the queries of view Y):
  basecase:  pos = k^X_i;  C(i) = {k^X_j, all j} ∪ {k^Y_j, j ≠ i}
  invariant: pos = k^Y_i;  C(i) = {k^Y_j, all j} ∪ {k^X_j, j ≠ i}   (the transformed pair is
             the positive)
  variant:   pos = k^X_i;  C(i) = {k^X_j, all j} ∪ {k^Y_j, all j}   (the transformed pair k^Y_i
             is one more, hard, negative)
and P(basecase, X) of one view alone is the mean of the two NCE terms with C(i) = {k^X_j}.
The loss of a hypothesis is the mean of its pair terms (`HYPOTHESES`).

Facts from facebookresearch/GDT:
- hypotheses (main_gdt.py train_one_epoch, README): 1 cross-modal baseline P(b, clip);
  2 variant to reversal P(v, clip, R); 3 invariant to reversal mean(P(b, clip, R),
  P(i, clip, R)); 4 and 5 the same with the time shift S; 6-9 (reversal, shift) variant/invariant
  (6 v/v, 7 i/v, 8 v/i, 9 i/i): P(r, clip, R), P(r, S, SR), P(s, clip, S), P(s, R, SR), plus
  P(b, clip, R) if reversal-invariant and P(b, clip, S) if shift-invariant, all equally weighted
  (the 1/6, 0.2, 0.25 of main_gdt.py).
- pair terms (gdt_helper.py get_pos_neg, get_losses, get_loss): the positives and the
  negatives are detached (`@torch.no_grad`, `.detach()`): gradients flow through the queries
  only, as here (`stop_gradient` on the keys); get_losses weighs the four NCE terms 0.25 each
  (0.5 each for one view); temperature `nce_t` 0.07.
- negatives: get_loss takes the local batch's keys (positives on the diagonal) plus the other
  GPUs' keys of both views (dist_collect_other), plus, for 'variant', the local transformed keys.
  With one example per GPU that is C(i) above. With more, the reference leaves out the local
  batch's keys of one view (untransformed ones for 'invariant', transformed ones for
  'basecase'); here every other example of the global batch counts alike, so the loss does not
  depend on how the batch is split over devices. The reference also extends its gathered lists
  in place (get_pos_neg: `feat_a_neg = feat_v_col; feat_a_neg.extend(...)`), so in hypotheses
  that call it more than once per step some other-GPU keys enter a later term's negatives
  twice; that is not reproduced.

`batch['mask']` (padding) and `batch['audio_mask']` (clips without audio) remove an example
from the queries and from the keys. The similarities are [B, B] blocks per query set (the
reference's global batch is 128: 16 GPUs x 8); `mmv.chunked_losses`' ring is not used: it
computes MMV's symmetric denominator (rows and columns) with gradients for both sides, while
GDT's denominators are one-sided over two key sets and its keys take no gradient.
"""

import jax
import jax.numpy as jnp

from mmv.losses import NEG_INF

KINDS = ('basecase', 'invariant', 'variant')


def _four_views(reversal, shift):
  terms = []
  if reversal == 'invariant':
    terms.append(('basecase', 'clip', 'reversed'))
  if shift == 'invariant':
    terms.append(('basecase', 'clip', 'shifted'))
  return tuple(terms) + ((reversal, 'clip', 'reversed'),
                         (reversal, 'shifted', 'shifted_reversed'),
                         (shift, 'clip', 'shifted'),
                         (shift, 'reversed', 'shifted_reversed'))


# Hypothesis number (GDT's --hypothesis) → pair terms (kind, view X, view Y or None).
HYPOTHESES = {
    1: (('basecase', 'clip', None),),
    2: (('variant', 'clip', 'reversed'),),
    3: (('basecase', 'clip', 'reversed'), ('invariant', 'clip', 'reversed')),
    4: (('variant', 'clip', 'shifted'),),
    5: (('basecase', 'clip', 'shifted'), ('invariant', 'clip', 'shifted')),
    6: _four_views('variant', 'variant'),
    7: _four_views('invariant', 'variant'),
    8: _four_views('variant', 'invariant'),
    9: _four_views('invariant', 'invariant'),
}


def views(hypothesis):
  """The views hypothesis `hypothesis` needs, in `mmv.models.gdt.VIEWS` order."""
  needed = {v for _, x, y in HYPOTHESES[hypothesis] for v in (x, y) if v is not None}
  return tuple(v for v in ('clip', 'reversed', 'shifted', 'shifted_reversed') if v in needed)


def query_nce(q, k_same, k_other, kind, valid, temperature):
  """Mean over valid i of −log softmax: queries q [B, D] against keys k_same (the query's view)
  and k_other (the paired view, or None), positives and candidates as `kind` says."""
  valid = valid > 0
  pair = valid[:, None] & valid[None, :]
  eye = jnp.eye(q.shape[0], dtype=bool)
  sim = lambda k: q.astype(jnp.float32) @ jax.lax.stop_gradient(k).astype(jnp.float32).T / (
      temperature)
  s_same = sim(k_same)
  if k_other is None:
    positive, blocks = jnp.diagonal(s_same), [jnp.where(pair, s_same, NEG_INF)]
  else:
    s_other = sim(k_other)
    same_ok, other_ok = {'basecase': (pair, pair & ~eye), 'invariant': (pair & ~eye, pair),
                         'variant': (pair, pair)}[kind]
    positive = jnp.diagonal(s_other if kind == 'invariant' else s_same)
    blocks = [jnp.where(same_ok, s_same, NEG_INF), jnp.where(other_ok, s_other, NEG_INF)]
  per_query = jax.nn.logsumexp(jnp.concatenate(blocks, axis=1), axis=1) - positive
  weights = valid.astype(jnp.float32)
  return jnp.sum(per_query * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def pair_term(emb, kind, x, y, valid, temperature):
  """P(kind, x, y): the mean of the NCE terms of the queries of views x (and y)."""
  if kind not in KINDS:
    raise ValueError(f'unknown pair kind {kind!r}; choose from {KINDS}')
  v, a = (lambda view: emb[f'video_{view}']), (lambda view: emb[f'audio_{view}'])
  if y is None:
    return 0.5 * (query_nce(v(x), a(x), None, kind, valid, temperature) +
                  query_nce(a(x), v(x), None, kind, valid, temperature))
  terms = [query_nce(v(x), a(x), a(y), kind, valid, temperature),
           query_nce(a(x), v(x), v(y), kind, valid, temperature),
           query_nce(v(y), a(y), a(x), kind, valid, temperature),
           query_nce(a(y), v(y), v(x), kind, valid, temperature)]
  return 0.25 * sum(terms)


def gdt_loss(embeddings, batch, *, hypothesis, temperature=0.07):
  """(loss, {term name: value}) of `hypothesis` on {'video_<view>', 'audio_<view>'} [B, D]."""
  if hypothesis not in HYPOTHESES:
    raise ValueError(f'unknown GDT hypothesis {hypothesis}; choose from {sorted(HYPOTHESES)}')
  valid = batch['mask'].astype(jnp.float32)
  if 'audio_mask' in batch:
    valid = valid * batch['audio_mask'].astype(jnp.float32)
  terms = {}
  for kind, x, y in HYPOTHESES[hypothesis]:
    name = f'loss_{kind}_{x}' + (f'_{y}' if y else '')
    terms[name] = pair_term(embeddings, kind, x, y, valid, temperature)
  return sum(terms.values()) / len(terms), terms
