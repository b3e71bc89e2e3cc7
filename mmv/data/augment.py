"""Device-side video ops in JAX: the uint8 crop from the host → the float clip.

Per clip: the crop (y, x, side) of its buffer resized to `crop_size` (as `tf.image.resize`
does it), an optional left-right flip, MMV's colour augmentation with the
semantics of `tf.image` (brightness, saturation in HSV, contrast around each frame's mean,
hue rotation in HSV, in DMVR's order, then clipped to [0, 1]), and the value range. All random
draws come from the host (`mmv.data.video`), so a clip is a pure function of its example.
"""

import jax
import jax.numpy as jnp

from mmv.data import views as view_ops

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALIZATIONS = ('unit', 'centered', 'imagenet')


def _taps(start, side, crop_size):
  """Source rows (or columns) and weights of output pixels 0..crop_size−1 resized from the crop
  [start, start + side): `tf.image.resize`'s bilinear rule (half-pixel centres, clamped to the
  crop, so the padding around it is never read)."""
  position = jnp.clip((jnp.arange(crop_size) + 0.5) * side / crop_size - 0.5, 0.0, side - 1.0)
  low = jnp.floor(position)
  high = jnp.minimum(low + 1.0, side - 1.0)
  return (start + low).astype(jnp.int32), (start + high).astype(jnp.int32), position - low


def crop_resize(frames, box, crop_size):
  """uint8 [B, T, H, W, 3] buffers, int [B, 3] crops (y, x, side) → float [B, T, crop, crop, 3]
  in [0, 255], as `tf.image.resize` of each crop."""

  def one(clip, crop):
    y, x, side = [v.astype(jnp.float32) for v in crop]
    side = jnp.maximum(side, 1.0)  # Padding rows of an evaluation batch have side 0.
    top, bottom, fy = _taps(y, side, crop_size)
    left, right, fx = _taps(x, side, crop_size)
    clip = clip.astype(jnp.float32)
    fy = fy[:, None, None]
    rows = clip[:, top] * (1.0 - fy) + clip[:, bottom] * fy
    fx = fx[:, None]
    return rows[:, :, left] * (1.0 - fx) + rows[:, :, right] * fx

  return jax.vmap(one)(frames, box)


def rgb_to_hsv(rgb):
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  value = jnp.max(rgb, axis=-1)
  spread = value - jnp.min(rgb, axis=-1)
  saturation = jnp.where(value > 0, spread / jnp.where(value > 0, value, 1.0), 0.0)
  safe = jnp.where(spread > 0, spread, 1.0)
  hue = jnp.where(r == value, (g - b) / safe,
                  jnp.where(g == value, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe)) / 6.0
  hue = jnp.where(spread > 0, jnp.mod(hue, 1.0), 0.0)
  return jnp.stack([hue, saturation, value], axis=-1)


def hsv_to_rgb(hsv):
  hue, saturation, value = hsv[..., 0:1], hsv[..., 1:2], hsv[..., 2:3]
  n = jnp.array([5.0, 3.0, 1.0])
  k = jnp.mod(n + hue * 6.0, 6.0)
  return value - value * saturation * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)


def colour_jitter(video, colour):
  """video float [B, T, H, W, 3] in [0, 1]; colour [B, 4] (brightness delta, saturation,
  contrast, hue delta). The identity draw (0, 1, 1, 0) leaves a clip unchanged."""
  brightness, saturation, contrast, hue = [colour[:, i, None, None, None, None]
                                           for i in range(4)]
  video = video + brightness
  hsv = rgb_to_hsv(video)
  video = hsv_to_rgb(hsv.at[..., 1:2].set(jnp.clip(hsv[..., 1:2] * saturation, 0.0, 1.0)))
  mean = jnp.mean(video, axis=(2, 3), keepdims=True)
  video = (video - mean) * contrast + mean
  hsv = rgb_to_hsv(video)
  video = hsv_to_rgb(hsv.at[..., 0:1].set(jnp.mod(hsv[..., 0:1] + hue, 1.0)))
  return jnp.clip(video, 0.0, 1.0)


def normalize(video, normalization):
  """Video in [0, 1] → 'unit': unchanged; 'centered': [-1, 1]; 'imagenet': (x − mean) / std."""
  if normalization == 'unit':
    return video
  if normalization == 'centered':
    return video * 2.0 - 1.0
  if normalization == 'imagenet':
    return (video - jnp.array(IMAGENET_MEAN)) / jnp.array(IMAGENET_STD)
  raise ValueError(f'normalization must be one of {NORMALIZATIONS}, got {normalization!r}')


def _finish_clips(batch, name, crop_size, normalization):
  """Pops the uint8 crops `name` and their draws (`name`_box, _flip, _colour) from `batch`;
  returns the float clips."""
  video = crop_resize(batch.pop(name), batch.pop(f'{name}_box'), crop_size) / 255.0
  flip = batch.pop(f'{name}_flip', None)
  if flip is not None:
    video = jnp.where(flip[:, None, None, None, None] > 0, video[:, :, :, ::-1], video)
  colour = batch.pop(f'{name}_colour', None)
  if colour is not None:
    video = colour_jitter(video, colour)
  return normalize(jnp.clip(video, 0.0, 1.0), normalization)


def finish_batch(batch, c):
  """The host batch (see `mmv.data.pipeline`) → the model's batch, with float `video` (and
  `video_V` for each extra view V the batch holds, `mmv.data.views`)."""
  if 'frames' not in batch:
    return batch
  batch = dict(batch)
  batch['video'] = _finish_clips(batch, 'frames', c.crop_size, c.normalization)
  for view in view_ops.parse(c):
    if view_ops.frames_key(view) in batch:
      batch[view_ops.video_key(view)] = _finish_clips(batch, view_ops.frames_key(view),
                                                      view.crop_size, c.normalization)
  return batch
