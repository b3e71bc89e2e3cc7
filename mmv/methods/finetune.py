"""Fine-tuning (the FT columns of the MMV table): a pretrained video backbone and a linear
classifier trained end to end on a labelled benchmark with softmax cross-entropy.

Views: one labelled clip per record (`config.data`, which `python -m mmv.finetune` sets from
the benchmark's training split and `config.finetune`). Towers: `mmv.models.finetune`, the
backbone (its variables copied from a pretrained run's checkpoint: `initial_state`) and a Dense
classifier. Loss: mean softmax cross-entropy over the labelled rows. Optimiser, as the MMV
paper's appendix states it: SGD with momentum, the learning rate multiplied by a factor (gamma)
at given epochs, weight decay on the classifier's variables only; the values default to GDT's
released fine-tuning protocol (configs/finetune_ucf101.py says which source states what).
Every length is in epochs of `clips_per_video` clips per training video; `train_videos`
(set from the prepared split) turns them into steps.
"""

import jax
import jax.numpy as jnp
import ml_collections
import optax

from mmv import checkpoint as ckpt_lib
from mmv.data import video as video_ops
from mmv.models import finetune as ft_model

TOWERS = ('video',)  # Evaluation's linear probe reads a fine-tuned workdir too.


def config_fields():
  c = ml_collections.ConfigDict()
  # Set by `python -m mmv.finetune` (a config file leaves them empty).
  c.benchmark = ''
  c.split = ''
  c.num_classes = 0
  c.train_videos = 0  # Videos of the prepared training split: epochs → steps.
  c.pretrained = ''  # Workdir whose checkpoint gives the backbone; '' trains from scratch.
  c.pretrained_step = -1  # Its checkpoint (the CLI resolves the latest to its step).
  # Optimiser: SGD with momentum; learning rates multiplied by `decay_factor` at each of
  # `decay_epochs`, after a linear warm-up from `warmup_factor` × the rate over
  # `warmup_epochs`; weight decay (added to the gradient, as torch's SGD) on the classifier.
  c.epochs = 12.0
  c.batch_size = 32  # Global.
  c.clips_per_video = 10  # Training clips per video in an epoch (the epoch's length).
  c.base_learning_rate = 2.5e-4  # The backbone's.
  c.classifier_learning_rate = 2.5e-3
  c.momentum = 0.9
  c.weight_decay = 5e-3  # The classifier's variables only.
  c.warmup_epochs = 2.0
  c.warmup_factor = 1e-5
  c.decay_epochs = (6.0, 10.0)
  c.decay_factor = 0.05
  c.dropout = 0.0  # Before the classifier.
  c.batch_norm = 'train'  # 'train' | 'frozen' (see mmv/models/finetune.py).
  # Input: frames stored at `fps` (the benchmark is converted at that rate), clips of
  # `num_frames` frames `frame_stride` apart from the first `max_seconds` (0: all) starting
  # by `clip_offsets`, short side resized to `min_resize`, `crop_size` crops.
  c.fps = 25.0
  c.max_seconds = 20.0
  c.clip_offsets = 'dmvr'
  c.num_frames = 32
  c.frame_stride = 2
  c.min_resize = 224
  c.crop_size = 224
  c.train_flip = True
  c.train_scale_jitter = (0.8, 1.2)
  c.train_color_augment = True
  # Test: `test_clips` evenly spaced clips × `test_crops` crops (1: central; 3: start, centre,
  # end of the long side) per video, softmax scores averaged.
  c.test_clips = 10
  c.test_crops = 3
  return c


def check_config(config):
  f = config.finetune
  if not f.num_classes or not f.train_videos or not f.benchmark:
    raise ValueError('fine-tuning runs through `python -m mmv.finetune --benchmark NAME ...`, '
                     'which sets finetune.benchmark, num_classes and train_videos from the '
                     'benchmark')
  if f.batch_norm not in ft_model.BATCH_NORM:
    raise ValueError(f'finetune.batch_norm={f.batch_norm!r}; choose from {ft_model.BATCH_NORM}')
  if not 0 <= f.dropout < 1:
    raise ValueError(f'finetune.dropout={f.dropout} must be in [0, 1)')
  if f.dropout and config.train.microbatches != 1:
    raise ValueError('finetune.dropout needs train.microbatches=1 (the micro-batched step '
                     'draws no dropout)')
  if f.epochs <= 0 or f.clips_per_video < 1 or f.batch_size < 1 or f.warmup_epochs < 0:
    raise ValueError(f'finetune.epochs ({f.epochs}) must be positive, clips_per_video '
                     f'({f.clips_per_video}) and batch_size ({f.batch_size}) at least 1, '
                     f'warmup_epochs ({f.warmup_epochs}) at least 0')
  if list(f.decay_epochs) != sorted(f.decay_epochs) or not 0 < f.warmup_factor <= 1:
    raise ValueError(f'finetune.decay_epochs ({f.decay_epochs}) must be increasing and '
                     f'warmup_factor ({f.warmup_factor}) in (0, 1]')
  if min(f.base_learning_rate, f.classifier_learning_rate, f.weight_decay, f.momentum) < 0:
    raise ValueError('finetune learning rates, weight_decay and momentum must be ≥ 0')
  if f.test_clips < 1 or f.test_crops not in (1, 3):
    raise ValueError(f'finetune.test_clips ({f.test_clips}) must be ≥ 1 and test_crops '
                     f'({f.test_crops}) 1 or 3')
  if config.train.batch_size != f.batch_size or config.train.steps != total_steps(config):
    raise ValueError(f'train.batch_size ({config.train.batch_size}) and train.steps '
                     f'({config.train.steps}) follow finetune.batch_size and finetune.epochs '
                     f'({f.batch_size}, {total_steps(config)} steps): set those')
  if tuple(config.data.modalities) != ('video',) or config.data.views:
    raise ValueError('fine-tuning reads one video clip per record: data.modalities=(\'video\',)'
                     ', no data.views')


def steps_per_epoch(config):
  f = config.finetune
  return f.clips_per_video * f.train_videos / f.batch_size


def epoch_step(config, epochs):
  """The train step at which `epochs` epochs are done (rounded)."""
  return int(round(epochs * steps_per_epoch(config)))


def total_steps(config):
  return max(1, epoch_step(config, config.finetune.epochs))


def learning_rate(config, peak):
  """The schedule of a rate `peak`: the update from step s uses its value at s."""
  f = config.finetune
  warmup = epoch_step(config, f.warmup_epochs)
  decays = optax.piecewise_constant_schedule(
      1.0, {epoch_step(config, e): f.decay_factor for e in f.decay_epochs})
  ramp = (optax.linear_schedule(f.warmup_factor, 1.0, warmup) if warmup
          else optax.constant_schedule(1.0))
  return lambda step: peak * ramp(step) * decays(step)


def _part(params):
  """'classifier' for the classifier's params, 'backbone' for the rest (also for the
  placeholder leaf optax.tree_map_params passes in place of the params)."""
  def part(path, _):
    head = path and str(getattr(path[0], 'key', '')) == ft_model.CLASSIFIER
    return 'classifier' if head else 'backbone'

  return jax.tree_util.tree_map_with_path(part, params)


def make_optimizer(config):
  f = config.finetune
  backbone = optax.sgd(learning_rate(config, f.base_learning_rate), momentum=f.momentum)
  classifier = optax.chain(
      optax.add_decayed_weights(f.weight_decay),
      optax.sgd(learning_rate(config, f.classifier_learning_rate), momentum=f.momentum))
  return optax.multi_transform({'backbone': backbone, 'classifier': classifier}, _part)


def build_model(config):
  f = config.finetune
  return ft_model.build_model(config.model, f.num_classes, f.dropout, f.batch_norm)


def init_batch(config, batch_size=2):
  d = config.data
  return {'video': jnp.zeros((batch_size, d.num_frames, d.crop_size, d.crop_size, 3),
                             jnp.float32)}


def make_loss_fn(config, mesh, implementation=None):
  """Mean softmax cross-entropy over the rows with a label (label ≥ 0, mask 1); terms: it and
  the training accuracy. One implementation (`implementation` is ignored)."""
  del config, mesh, implementation

  def loss_fn(outputs, batch):
    logits, labels = outputs['logits'], batch['label']
    valid = ((labels >= 0) & (batch['mask'] > 0)).astype(jnp.float32)
    count = jnp.maximum(jnp.sum(valid), 1.0)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(labels, 0))
    loss = jnp.sum(ce * valid) / count
    accuracy = jnp.sum((jnp.argmax(logits, -1) == labels) * valid) / count
    return loss, {'cross_entropy': loss, 'accuracy': accuracy}

  return loss_fn


def initial_state(config, state, mesh):
  """`state` with the pretrained run's video backbone (params and BatchNorm statistics) in
  place of the random one; the classifier and the optimiser state as initialised."""
  del mesh
  f = config.finetune
  if not f.pretrained:
    return state
  name = ft_model.BACKBONE
  part = {'params': {name: state.params[name]},
          'batch_stats': {name: state.batch_stats[name]} if name in state.batch_stats else {}}
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                          part)
  checkpointer = ckpt_lib.Checkpointer(f'{f.pretrained}/checkpoints', read_only=True)
  try:
    restored, _ = checkpointer.restore_part(
        abstract, step=None if f.pretrained_step < 0 else f.pretrained_step)
  finally:
    checkpointer.close()
  return state.replace(params={**state.params, **restored['params']},
                       batch_stats={**state.batch_stats, **restored['batch_stats']})


def crop_positions(config):
  """Where the test crops lie (`data.crop_position` of each test pass)."""
  return ('centre',) if config.finetune.test_crops == 1 else video_ops.CROP_POSITIONS
