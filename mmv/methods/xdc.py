"""XDC (Alwassel et al., "Self-Supervised Learning by Cross-Modal Audio-Video Clustering",
NeurIPS 2020): each round, k-means on one modality's encoder features gives every training
record a pseudo-label, and the other modality's encoder learns to predict it (cross-entropy,
classifiers re-initialised each round); audio clusters supervise video and video clusters
supervise audio, in the same round.

No training code was released: this follows the paper's description. `config.xdc.variant`:
  'xdc'  video ← audio clusters, audio ← video clusters (cross-modal)
  'mdc'  each encoder predicts both modalities' clusters (two heads each; multi-head)
  'cdc'  one clustering of the two modalities' features concatenated; both encoders predict it
  'sdc'  each encoder predicts its own modality's clusters (DeepCluster per modality)
Views: one clip with its aligned audio per record (`config.data`), and the record's key
(`data.with_keys`) to look its pseudo-label up. Towers: `mmv.models.xdc`. Rounds (feature
extraction, k-means, the label files, the classifiers' re-initialisation, the input with the
new labels): `mmv.xdc_rounds`, which the training loop calls at each round's start.
"""

import jax
import jax.numpy as jnp
import ml_collections
import optax

from mmv import kmeans
from mmv import optim
from mmv import pseudo_labels
from mmv import xdc_rounds
from mmv.data import pipeline
from mmv.models import xdc as xdc_model

TOWERS = ('video', 'audio')  # Evaluation runs the protocols these serve (no text: no retrieval).
# (tower, clustering) of each classifier.
VARIANTS = {
    'xdc': (('video', 'audio'), ('audio', 'video')),
    'mdc': (('video', 'audio'), ('video', 'video'), ('audio', 'audio'), ('audio', 'video')),
    'cdc': (('video', 'joint'), ('audio', 'joint')),
    'sdc': (('video', 'video'), ('audio', 'audio')),
}


def config_fields():
  c = ml_collections.ConfigDict()
  c.variant = 'xdc'  # One of VARIANTS (see the module doc).
  c.k = 64  # Clusters of every clustering.
  c.round_steps = 1000  # Train steps per round: cluster again every that many steps.
  c.kmeans_iterations = 100  # At most; it stops earlier once no label changes or by tol.
  c.kmeans_tol = 1e-4  # Relative, as scikit-learn's (see mmv.kmeans).
  c.kmeans_init = 'k-means++'  # Or 'random'.
  # Each modality's features L2-normalised before clustering (DeepCluster also PCA-whitens;
  # the XDC paper does not say): so the joint clustering weighs the modalities alike.
  c.normalize = True
  c.feature_clips = 1  # Clips per record whose features are averaged for its clustering.
  c.feature_batch_clips = 64  # Clips per batch of the feature extraction.
  return c


def clusterings(config):
  """The clusterings of the variant, {name: k}, in a fixed order."""
  names = []
  for _, clustering in VARIANTS[config.xdc.variant]:
    if clustering not in names:
      names.append(clustering)
  return {name: config.xdc.k for name in sorted(names)}


def check_config(config):
  c = config.xdc
  if c.variant not in VARIANTS:
    raise ValueError(f'xdc.variant={c.variant!r}; choose from {sorted(VARIANTS)}')
  if c.k < 2 or c.round_steps < 1 or c.kmeans_iterations < 1 or c.kmeans_tol < 0:
    raise ValueError(f'xdc.k={c.k} must be ≥ 2, xdc.round_steps={c.round_steps} and '
                     f'xdc.kmeans_iterations={c.kmeans_iterations} ≥ 1, '
                     f'xdc.kmeans_tol={c.kmeans_tol} ≥ 0')
  if c.kmeans_init not in kmeans.INITS:
    raise ValueError(f'xdc.kmeans_init={c.kmeans_init!r}; choose from {kmeans.INITS}')
  if c.feature_clips < 1 or c.feature_batch_clips < 1:
    raise ValueError(f'xdc.feature_clips={c.feature_clips} and xdc.feature_batch_clips='
                     f'{c.feature_batch_clips} must be ≥ 1')
  modalities = set(config.data.modalities)
  if modalities != {'video', 'audio'}:
    raise ValueError(f"XDC trains on data.modalities=('video', 'audio'), got "
                     f'{tuple(config.data.modalities)}')
  if not config.data.get('with_keys', False):
    raise ValueError('XDC looks pseudo-labels up by record key: set data.with_keys=True')
  if config.data.get('views', ()):
    raise ValueError('XDC reads one clip per record: leave data.views empty')
  pseudo_labels.pack({n: jnp.zeros(1, jnp.int32) for n in clusterings(config)},
                     clusterings(config))  # A clear error if the labels do not fit an int32.


def build_model(config):
  heads = [(tower, clustering, config.xdc.k) for tower, clustering in
           VARIANTS[config.xdc.variant]]
  return xdc_model.build_model(config.model, heads)


def init_batch(config, batch_size=2):
  shapes = pipeline.output_shapes(config.data)
  return {k: jnp.zeros((batch_size,) + shapes[k], jnp.float32) for k in ('video', 'audio')}


def make_loss_fn(config, mesh, implementation=None):
  """Σ over classifiers of the mean cross-entropy of its logits and its clustering's labels,
  over the batch's rows that have one (pseudo_label ≥ 0, mask 1). Terms: each classifier's
  cross-entropy (`ce_<tower>_<clustering>`) and accuracy, and the share of labelled rows.
  One implementation: `implementation` is ignored (the loss is per row)."""
  del mesh, implementation
  heads = VARIANTS[config.xdc.variant]
  sizes = clusterings(config)

  def loss_fn(outputs, batch):
    labels = pseudo_labels.unpack(batch['pseudo_label'], sizes)
    terms, loss = {}, 0.0
    for tower, clustering in heads:
      logits, y = outputs[xdc_model.logits_key(tower, clustering)], labels[clustering]
      valid = ((y >= 0) & (batch['mask'] > 0)).astype(jnp.float32)
      count = jnp.maximum(jnp.sum(valid), 1.0)
      ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(y, 0))
      terms[f'ce_{tower}_{clustering}'] = jnp.sum(ce * valid) / count
      terms[f'accuracy_{tower}_{clustering}'] = jnp.sum(
          (jnp.argmax(logits, -1) == y) * valid) / count
      loss += terms[f'ce_{tower}_{clustering}']
    terms['labelled'] = jnp.mean((batch['pseudo_label'] >= 0).astype(jnp.float32))
    return loss, terms

  return loss_fn


def _part(params):
  """'heads' for the classifiers' params, 'towers' for the rest (also for the placeholder
  leaf that optax.tree_map_params passes in place of the params)."""
  def part(path, _):
    head = path and str(getattr(path[0], 'key', '')).startswith(xdc_model.HEAD_PREFIX)
    return 'heads' if head else 'towers'

  return jax.tree_util.tree_map_with_path(part, params)


def make_optimizer(config):
  """`mmv.optim`'s (Adam / AdamW, warmup, cosine), with the classifiers' own state apart
  ('heads' of an optax.multi_transform), so that a round resets it whole, Adam's step count
  (bias correction) included, and leaves the encoders' moments alone."""
  tx = optim.make_optimizer(config.optim, config.train.steps)
  return optax.multi_transform({'heads': tx, 'towers': tx}, _part)


def frozen_params(config):
  del config
  return ()


def rounds(config, workdir, mesh, model, tx, abstract):
  """The training loop's round hook (`mmv.xdc_rounds.Rounds`)."""
  return xdc_rounds.Rounds(config, workdir, mesh, model, tx, abstract,
                           clusterings=clusterings(config), init_batch=init_batch(config))
