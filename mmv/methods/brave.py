"""BraVe as a method: its config block, model, loss and optimiser (the model's modules are
mmv/models/brave.py; configs/brave.py has the paper's settings).

Views (config.data): the main clip is the broad view (data.num_frames, frame_stride, crop_size,
with its audio), and the narrow view is the extra view `brave.narrow_view` of data.views (batch
key video_<narrow_view>). Backbones are config.model's: model.video_backbone for the narrow and
(with brave.broad_video) the broad video, model.audio_backbone for the broad audio (with
brave.broad_audio). Learning rate, warmup and weight decay are config.optim's; the optimiser's
kind and LARS settings are config.brave's. Evaluation embeds video with the narrow backbone.

Facts from google-deepmind/brave (commit 0ae20d9):
- brave/models/brave/brave.py `_build_loss_fn`: for each broad modality m (video, audio) the
  loss has two terms, broad→narrow `_regression_loss(h_broad_m, stop_gradient(z_narrow_m))` and
  narrow→broad `_regression_loss(h_narrow_m, stop_gradient(z_broad_m))`; the loss is the mean of
  all terms (2 or 4). `_regression_loss(x, y)` = mean over the batch of
  0.5·||x/|x| − y/|y|||², where a norm at or below 1e-5 counts as 1e-5 (`_safe_norm`, whose
  gradient stays finite). No negatives.
- brave/models/brave/config.py: optimizer 'lars' (momentum 0.9, nesterov, trust coefficient
  0.001), weight decay 1e-2, cosine decay with linear warmup (init 0, peak 1.0, 5000 warmup
  steps, decay over the 300k training steps to 0), `scale_learning_rate_by_regex`
  [('.*predictor.*', 10.0)]; brave/config.py: 300k steps; global batch 512.
- brave/training/optimizers.py: the optimiser is chain(rescale the updates of params whose
  '/'-joined path matches a regex, optax.lars(...)) (or optax.adamw for 'adam'); weight decay
  and LARS's trust ratio are both masked by `exclude_bias_and_normalizers`: no decay on a param
  named 'b' or on any param of a module whose path contains 'norm' (BatchNorm's scale and
  offset). Here that is: decay on 'kernel' leaves only (Dense/Conv weights), since the model's
  other leaves are Dense biases and BatchNorm scale/bias.

Padding examples (batch['mask'] 0) and, for the audio pair, clips without audio
(batch['audio_mask'] 0) are left out of the means.
"""

import re

import jax
import jax.numpy as jnp
import ml_collections
import optax

from mmv import optim
from mmv.data import pipeline
from mmv.data import views as view_ops
from mmv.models import brave as brave_model
from mmv.models import mmv as mmv_model

# The narrow video backbone embeds video; the broad audio backbone audio (the released V/A model
# and configs/brave.py have it; with brave.broad_audio False, embed_audio is a clear error).
TOWERS = ('video', 'audio')
SAFE_NORM_MIN = 1e-5  # brave.py `_regression_loss(..., epsilon=1e-5)`.
BROAD_MODALITIES = ('video', 'audio')


def _safe_norm(x, min_norm):
  """|x| over the last axis, `min_norm` where it is at or below it (and a finite gradient)."""
  norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
  small = norm <= min_norm
  safe = jnp.linalg.norm(jnp.where(small, jnp.ones_like(x), x), axis=-1, keepdims=True)
  return jnp.where(small, min_norm, safe)


def regression_loss(x, y, mask=None, min_norm=SAFE_NORM_MIN):
  """Mean over the rows (where `mask` is 1) of 0.5·||x/|x| − y/|y|||²; x, y [B, D]."""
  x, y = x.astype(jnp.float32), y.astype(jnp.float32)
  per_example = 0.5 * jnp.sum((x / _safe_norm(x, min_norm) - y / _safe_norm(y, min_norm)) ** 2,
                              axis=-1)
  if mask is None:
    return jnp.mean(per_example)
  mask = mask.astype(jnp.float32)
  return jnp.sum(per_example * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def brave_loss(outputs, batch):
  """(mean of the cross-view terms, {term: value}) from the model's outputs (mmv/models/brave)."""
  mask = batch['mask']
  terms = {}
  for m in BROAD_MODALITIES:
    if f'z_broad_{m}' not in outputs:
      continue
    pair_mask = mask * batch['audio_mask'] if m == 'audio' else mask
    terms[f'loss_b_to_n_{m}'] = regression_loss(
        outputs[f'h_broad_{m}'], jax.lax.stop_gradient(outputs[f'z_narrow_{m}']), pair_mask)
    terms[f'loss_n_to_b_{m}'] = regression_loss(
        outputs[f'h_narrow_{m}'], jax.lax.stop_gradient(outputs[f'z_broad_{m}']), pair_mask)
  if not terms:
    raise ValueError('BraVe outputs hold no broad view (z_broad_video / z_broad_audio)')
  return jnp.mean(jnp.stack(list(terms.values()))), terms


def _path(p):
  return jax.tree_util.keystr(p, simple=True, separator='/')


def weight_decay_mask(params):
  """True where BraVe decays the weights (and LARS uses the trust ratio): 'kernel' leaves."""
  return jax.tree_util.tree_map_with_path(lambda p, _: _path(p).split('/')[-1] == 'kernel',
                                          params)


def path_mask(params, pattern):
  """True where the '/'-joined param path matches `pattern` (re.match, as BraVe's rescaler)."""
  regex = re.compile(pattern)
  return jax.tree_util.tree_map_with_path(lambda p, _: bool(regex.match(_path(p))), params)


def config_fields():
  """config.brave, at the released config's values (brave/models/brave/config.py: narrow video,
  broad audio; 128-d projections; LARS; predictor learning rate x10)."""
  return ml_collections.ConfigDict(dict(
      narrow_view='narrow',  # The data.views entry of the narrow clip.
      broad_video=False,  # include_video_in_broad_view
      broad_audio=True,  # include_audio_in_broad_view
      output_dim=128,  # output_dims: z and h.
      hidden_dim=4096,  # modules.py: Projector's and Predictor's hidden Linear.
      optimizer='lars',  # 'lars' | 'adamw'
      momentum=0.9,
      nesterov=True,
      trust_coefficient=0.001,
      predictor_lr_scale=10.0,  # scale_learning_rate_by_regex
      predictor_pattern=r'.*predictor.*',
  ))


def _views(config):
  """{name: mmv.data.views.View} of data.views, checked."""
  return {v.name: v for v in view_ops.parse(config.data)}


def check_config(config):
  c = config.brave
  if not (c.broad_video or c.broad_audio):
    raise ValueError('brave.broad_video and brave.broad_audio are both False: the broad view '
                     'needs video or audio')
  if c.optimizer not in ('lars', 'adamw'):
    raise ValueError(f'unknown brave.optimizer {c.optimizer!r}; choose from lars, adamw')
  views = _views(config)
  if c.narrow_view not in views:
    raise ValueError(f'brave.narrow_view={c.narrow_view!r} is not among data.views '
                     f'{tuple(views)}: BraVe needs its narrow clip as an extra view')
  modalities = tuple(config.data.modalities)
  for flag, modality in (('broad_video', 'video'), ('broad_audio', 'audio')):
    if c[flag] and modality not in modalities:
      raise ValueError(f'brave.{flag} needs {modality!r} among data.modalities {modalities}')
  if c.output_dim < 1 or c.hidden_dim < 1:
    raise ValueError('brave.output_dim and brave.hidden_dim must be at least 1')


def build_model(config):
  """The BraVe module: config.model's backbones, config.brave's head and views."""
  c, m = config.brave, config.model
  video = lambda: mmv_model.build_backbone(m, 'video')
  return brave_model.Brave(
      narrow_video=video(),
      broad_video=video() if c.broad_video else None,
      broad_audio=mmv_model.build_backbone(m, 'audio') if c.broad_audio else None,
      head=brave_model.ProjectAndPredict(c.output_dim, c.hidden_dim, bn_decay=m.bn_decay,
                                         bn_eps=m.bn_eps, dtype=mmv_model.DTYPES[m.dtype]),
      narrow_key=f'video_{c.narrow_view}')


def init_batch(config, batch_size=2):
  """Zero arrays of the model's batch: the broad clip (video and/or audio) and the narrow one."""
  c = config.brave
  shapes = pipeline.output_shapes(config.data)
  view = _views(config)[c.narrow_view]
  batch = {f'video_{c.narrow_view}': jnp.zeros(
      (batch_size, view.num_frames, view.crop_size, view.crop_size, 3), jnp.float32)}
  if c.broad_video:
    batch['video'] = jnp.zeros((batch_size,) + shapes['video'], jnp.float32)
  if c.broad_audio:
    batch['audio'] = jnp.zeros((batch_size,) + shapes['audio'], jnp.float32)
  return batch


def make_loss_fn(config, mesh, implementation=None):
  """`(outputs, batch) -> (loss, terms)`: BraVe's loss needs no collective of its own (no
  negatives); under jit on batch-sharded arrays its means span the global batch."""
  del config, mesh, implementation
  return brave_loss


def make_optimizer(config):
  return optimizer(config.brave, config.optim, config.train.steps)


def optimizer(c, optim_c, total_steps):
  """BraVe's optimiser: block `c` (config.brave), rate and decay from `optim_c` (config.optim).

  chain(×`c.predictor_lr_scale` on the predictor's updates, LARS or AdamW with BraVe's masks).
  The schedule is `optim.learning_rate_schedule`, so `optim.with_schedule_count` keeps it on the
  train step's clock.
  """
  schedule = optim.learning_rate_schedule(optim_c, total_steps)
  if c.optimizer == 'lars':
    base = optax.lars(schedule, weight_decay=optim_c.weight_decay,
                      weight_decay_mask=weight_decay_mask, trust_coefficient=c.trust_coefficient,
                      trust_ratio_mask=weight_decay_mask, momentum=c.momentum,
                      nesterov=c.nesterov)
  elif c.optimizer == 'adamw':
    base = optax.adamw(schedule, weight_decay=optim_c.weight_decay, mask=weight_decay_mask)
  else:
    raise ValueError(f'unknown brave.optimizer {c.optimizer!r}; choose from lars, adamw')
  scale = optax.masked(optax.scale(c.predictor_lr_scale),
                       lambda params: path_mask(params, c.predictor_pattern))
  return optax.chain(scale, base)
