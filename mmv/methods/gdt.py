"""GDT (Patrick et al. 2021, "Multi-modal Self-Supervision from Generalized Data
Transformations", facebookresearch/GDT): audio-visual contrastive learning whose positives and
negatives follow a hypothesis of invariance or variance to time reversal and time shift.

Views: the clip, its time reversal (done on device: frames and log-mel frames reversed), and
for hypotheses 4-9 a time-shifted clip of the same video, the `data.views` entry named
`gdt.shift_view` (placement 'independent', with audio), and its reversal.
Towers: `mmv.models.gdt` (a video and an audio backbone by name, GDT's MLP heads).
Loss: `mmv.gdt_loss` (hypotheses 1-9 of GDT's main_gdt.py), dense over the global batch.
Optimiser: GDT's (main_gdt.py, scripts/pretrain_gdt_k400.sh): SGD, momentum 0.9, weight decay
1e-5 added to the gradient (PyTorch's SGD), learning rate 0.01 warmed up linearly over 10 epochs
to 0.01 · world size (GradualWarmupScheduler with multiplier = world size, 16 GPUs in the
script), then constant (its multi-step milestone, epoch 251, lies after the 201 epochs).
Here the warmup is per step rather than per epoch.
"""

import functools

import jax.numpy as jnp
import ml_collections
import optax

from mmv import gdt_loss
from mmv.data import pipeline
from mmv.data import views as view_ops
from mmv.models import gdt as gdt_model
from mmv.models import mmv as mmv_model

TOWERS = ('video', 'audio')


def config_fields():
  """config.gdt at the values of GDT's scripts/pretrain_gdt_k400.sh (see configs/gdt.py)."""
  c = ml_collections.ConfigDict()
  # GDT's --hypothesis (README): 1 cross-modal baseline; 2 / 3 variant / invariant to time
  # reversal; 4 / 5 to time shift; 6-9 reversal and shift: v/v, i/v, v/i, i/i.
  c.hypothesis = 1
  c.temperature = 0.07  # --nce_t.
  c.head_hidden = 512  # MLP n_hidden (model.py).
  c.head_dim = 256  # num_classes of GDT(...) in main_gdt.py.
  # GDT's MLP has Dropout(0.3) before each Linear; the train step passes no dropout rng, so a
  # rate above 0 is refused by check_config until it does.
  c.head_dropout = 0.0
  c.shift_view = 'shifted'  # The data.views entry holding the time-shifted clip (4-9).
  c.learning_rate = 0.01  # --lr: the warmup's start.
  c.warmup_multiplier = 16.0  # GradualWarmupScheduler multiplier = world size (2 nodes x 8).
  c.warmup_steps = 18_000  # 10 epochs (--lr_warmup_epochs) of ~230k videos at 128 a batch.
  c.momentum = 0.9
  c.weight_decay = 1e-5
  return c


def check_config(config):
  g = config.gdt
  if g.hypothesis not in gdt_loss.HYPOTHESES:
    raise ValueError(f'gdt.hypothesis={g.hypothesis!r}; choose from '
                     f'{sorted(gdt_loss.HYPOTHESES)} (GDT README)')
  if g.head_dropout:
    raise ValueError('gdt.head_dropout > 0 needs a dropout rng, which the train step does not '
                     'pass; use 0')
  if g.temperature <= 0:
    raise ValueError(f'gdt.temperature must be positive, got {g.temperature}')
  missing = [m for m in ('video', 'audio') if m not in config.data.modalities]
  if missing:
    raise ValueError(f'GDT needs data.modalities to include {missing}')
  if any(v.startswith('shifted') for v in gdt_loss.views(g.hypothesis)):
    view = {v.name: v for v in view_ops.parse(config.data)}.get(g.shift_view)
    if view is None:
      raise ValueError(
          f'gdt.hypothesis={g.hypothesis} compares time-shifted clips: add a data.views entry '
          f"named gdt.shift_view={g.shift_view!r}, e.g. (('{g.shift_view}', NUM_FRAMES, "
          "FRAME_STRIDE, CROP_SIZE, 'independent', True),)")
    if view.placement != 'independent' or not view.with_audio:
      raise ValueError(f'data.views entry {tuple(view)!r}: GDT\'s shifted clip is placed '
                       "'independent' and has audio (with_audio True)")


def build_model(config):
  c, g = config.model, config.gdt
  backbones = {kind: mmv_model.build_backbone(c, kind) for kind in ('video', 'audio')}
  dtype = mmv_model.DTYPES[c.dtype]
  head = functools.partial(gdt_model.MLPHead, hidden=g.head_hidden, dim=g.head_dim,
                           dropout=g.head_dropout, bn_decay=c.bn_decay, bn_eps=c.bn_eps,
                           dtype=dtype)
  return gdt_model.GDT(video_backbone=backbones['video'], audio_backbone=backbones['audio'],
                       video_head=head(), audio_head=head(),
                       views=gdt_loss.views(g.hypothesis), shift_view=g.shift_view)


def init_batch(config, batch_size=2):
  """Zero video and audio of the clip (and of the shifted view where the hypothesis has it)."""
  shapes = pipeline.output_shapes(config.data)
  keys = ['video', 'audio']
  if any(v.startswith('shifted') for v in gdt_loss.views(config.gdt.hypothesis)):
    keys += [f'video_{config.gdt.shift_view}', f'audio_{config.gdt.shift_view}']
  return {k: jnp.zeros((batch_size,) + tuple(shapes[k]), jnp.float32) for k in keys}


def make_loss_fn(config, mesh, implementation=None):
  """GDT's loss of `gdt.hypothesis`; dense only (see mmv/gdt_loss.py for why no ring)."""
  del mesh
  if implementation not in (None, 'dense'):
    raise ValueError(f"GDT's loss has one implementation, 'dense'; got {implementation!r}")
  g = config.gdt
  return functools.partial(gdt_loss.gdt_loss, hypothesis=g.hypothesis,
                           temperature=g.temperature)


def frozen_params(config):
  del config
  return ()


def learning_rate_schedule(config):
  """gdt.learning_rate → learning_rate · warmup_multiplier linearly over warmup_steps, then
  constant."""
  g = config.gdt
  peak = g.learning_rate * g.warmup_multiplier
  return optax.join_schedules(
      [optax.linear_schedule(g.learning_rate, peak, max(g.warmup_steps, 1)),
       optax.constant_schedule(peak)], [g.warmup_steps])


def make_optimizer(config):
  """PyTorch's SGD as GDT uses it: g + wd·θ, then heavy-ball momentum, times the schedule."""
  g = config.gdt
  return optax.chain(optax.add_decayed_weights(g.weight_decay),
                     optax.sgd(learning_rate_schedule(config), momentum=g.momentum))
