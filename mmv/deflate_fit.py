"""The BN re-fit of a deflated model (MMV's deflation, `python -m mmv.tools.deflate`).

Summed kernels on an image do not give what the video network gives on the static video (the
image repeated over the clip's `data.num_frames`): the clip's ends are zero-padded. As the paper
does, the deflated network's BatchNorm scales and offsets (gamma, beta) of the video backbone
are learned anew, everything else frozen, to minimise the L1 distance between the deflated
backbone's features of frames and the video backbone's features of their static videos. No
labels: any frames serve; here the middle frame of each training clip (as the training stream
makes them), one per clip, `deflate.batch_size` per step over all devices (the batch sharded
as in training). BatchNorm normalises with the video network's moving averages throughout (the
inference mode the image model runs in), so what is fitted is what is used.

The L1 is the mean over frames and features of |deflated − video|; `held_out_l1` measures it
on the middle frames of the central clips of the test split (`data.test_split`).
"""

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from mmv import sharding as shard_lib
from mmv import train_step as step_lib
from mmv.data import pipeline
from mmv.data import stream as data_stream


def config_fields():
  """`config.deflate`: the re-fit's settings (a locked block: a misspelt field is an error)."""
  c = ml_collections.ConfigDict()
  c.steps = 200  # Adam steps on the BatchNorm scales and offsets of the video backbone.
  c.learning_rate = 1e-3
  c.batch_size = 64  # Frames per step, over all devices (one per training clip).
  c.log_every = 20
  c.checkpoint_every = 100
  c.held_out_batches = 4  # Batches (of batch_size frames) of the test split for the L1.
  return c


BACKBONE = 'video_backbone'  # The video backbone's module in the models that deflate.


# The methods whose model has one video backbone (BACKBONE) and `embed_image`.
METHODS = ('mmv', 'gdt', 'xdc')


def check_method(config):
  """A clear error for a model whose video backbone cannot be deflated and re-fitted here."""
  method = config.get('method', 'mmv')
  if method not in METHODS:
    raise ValueError(f'method {method!r} has no single video backbone to deflate: deflation '
                     f'serves the models of {", ".join(METHODS)}')


def refit_paths(variables):
  """The flattened paths of the video backbone's BatchNorm scales and offsets in `params`:
  the modules whose statistics are in `batch_stats`."""
  params = flax.traverse_util.flatten_dict(variables['params'])
  stats = {path[:-1] for path in flax.traverse_util.flatten_dict(variables['batch_stats'])}
  return tuple(sorted(p for p in params
                      if p[0] == BACKBONE and p[:-1] in stats and p[-1] in ('scale', 'bias')))


def select(params, paths):
  flat = flax.traverse_util.flatten_dict(params)
  return {'/'.join(p): flat[p] for p in paths}


def merge(params, fitted):
  flat = flax.traverse_util.flatten_dict(params)
  flat.update({tuple(k.split('/')): v for k, v in fitted.items()})
  return flax.traverse_util.unflatten_dict(flat)


def _backbone(module, x):
  return getattr(module, BACKBONE)(x, False).astype(jnp.float32)


def frames_of(batch):
  """The middle frame [B, H, W, 3] of each clip of a pipeline batch (normalised)."""
  video = batch['video']
  return video[:, video.shape[1] // 2]


class Refit:
  """The jitted functions of a re-fit: the L1 of frames and the Adam step on the BN variables.

  `video_model`, `image_model`: the model of the config and of its `model.deflated` copy;
  `num_frames`: the static video's length (the training clip's).
  """

  def __init__(self, video_model, image_model, num_frames, paths, tx):
    self.paths, self.tx = paths, tx

    def distance(video_variables, image_variables, frames, mask, with_scale=False):
      """The L1 over the frames (`mask`: the real ones); `with_scale`: and the mean |video
      feature| of the static videos, what the L1 compares with."""
      static = jnp.repeat(frames[:, None], num_frames, axis=1)
      target = video_model.apply(video_variables, static, method=_backbone)
      output = image_model.apply(image_variables, frames, method=_backbone)
      mean = lambda x: jnp.sum(jnp.mean(x, axis=-1) * mask) / jnp.maximum(jnp.sum(mask), 1.0)
      l1 = mean(jnp.abs(output - target))
      return (l1, mean(jnp.abs(target))) if with_scale else l1

    def step(state, video_variables, frames):
      def loss(fitted):
        variables = {'params': merge(state.params, fitted), 'batch_stats': state.batch_stats}
        return distance(video_variables, variables, frames, jnp.ones(frames.shape[:1]))

      fitted = select(state.params, paths)
      value, grads = jax.value_and_grad(loss)(fitted)
      updates, opt_state = tx.update(grads, state.opt_state, fitted)
      fitted = optax.apply_updates(fitted, updates)
      return state.replace(step=state.step + 1, params=merge(state.params, fitted),
                           opt_state=opt_state), value

    self.distance = jax.jit(distance, static_argnames='with_scale')
    self.step = jax.jit(step, donate_argnums=0)

  def initial_state(self, image_variables, mesh):
    """The state before the first step: the variables as placed, the step and Adam's state
    (of the BN variables alone: small) replicated on `mesh`."""
    replicated = shard_lib.replicated(mesh)
    opt_state = self.tx.init(jax.device_get(select(image_variables['params'], self.paths)))
    return step_lib.TrainState(
        step=jax.device_put(np.zeros((), np.int32), replicated),
        params=image_variables['params'], batch_stats=image_variables['batch_stats'],
        opt_state=jax.device_put(opt_state, replicated))


def optimizer(c):
  return optax.adam(c.learning_rate)


def frames_config(config, split=None):
  """The data config reading video alone (no audio or text decoded): the training mixture,
  or `split` of `data.data_dir` read once as evaluation reads it (its central clips)."""
  c = ml_collections.ConfigDict(config.data.to_dict())
  c.modalities = ('video',)
  if split is not None:
    c.mixture, c.num_test_clips = (), 1
  return c


def train_frames(config, mesh, seed):
  """Global batches of training clips' frames, sharded over the mesh, forever."""
  c = frames_config(config)
  local = shard_lib.check_batch_size(config.deflate.batch_size, mesh, 'deflate.batch_size')
  stream = data_stream.train_stream(c, batch_size=local, seed=seed,
                                    process_index=jax.process_index(),
                                    process_count=jax.process_count())
  for batch in pipeline.global_batches(stream, shard_lib.batch_sharding(mesh), c, c.prefetch):
    yield frames_of(batch)


def held_out_frames(config, mesh):
  """[(frames, mask)] of the first `deflate.held_out_batches` batches of the test split."""
  c = frames_config(config, config.data.test_split)
  size = config.deflate.batch_size
  shard_lib.check_batch_size(size, mesh, 'deflate.batch_size')
  stream = data_stream.eval_stream(c, c.test_split, batch_size=size // jax.process_count(),
                                   process_index=jax.process_index(),
                                   process_count=jax.process_count())
  batches = []
  for batch in pipeline.global_batches(stream, shard_lib.batch_sharding(mesh), c, c.prefetch):
    batches.append((frames_of(batch), batch['mask'].astype(jnp.float32)))
    if len(batches) == config.deflate.held_out_batches:
      break
  return batches


def mean_l1(refit, video_variables, image_variables, batches):
  """(the L1 over all frames of `batches`, the mean |video feature|), each frame counted once
  (padding rows left out)."""
  totals, rows = np.zeros(2), 0.0
  for frames, mask in batches:
    n = float(np.sum(jax.device_get(mask)))
    totals += n * np.asarray(jax.device_get(refit.distance(
        video_variables, image_variables, frames, mask, with_scale=True)))
    rows += n
  return tuple(totals / rows) if rows else (float('nan'),) * 2


def variables_of(state):
  return {'params': state.params, 'batch_stats': state.batch_stats}
