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


def _hue(r, g, b, value, spread):
  """tf.image's hue, in turns, of channel planes with max `value` and max − min `spread`: in
  [−1/6, 1) (callers wrap it), arbitrary where spread is 0 (it has no weight there)."""
  scale = 1.0 / (6.0 * jnp.where(spread > 0, spread, 1.0))
  hue = jnp.where(r == value, (g - b) * scale,
                  jnp.where(g == value, (b - r) * scale + 1.0 / 3.0, (r - g) * scale + 2.0 / 3.0))
  return hue


def _adjust_saturation(r, g, b, factor):
  """`tf.image.adjust_saturation` without the round trip through HSV.

  HSV → RGB gives each channel as value − value·saturation·w(hue), with w from the hue alone:
  scaling the saturation (clipped to [0, 1] as tf does) from s to s' moves each channel to
  value − (value − channel)·s'/s. A pixel whose value is ≤ 0 has saturation 0 in tf's HSV, so
  it comes back grey at its value.
  """
  value = jnp.maximum(jnp.maximum(r, g), b)
  spread = value - jnp.minimum(jnp.minimum(r, g), b)
  lit = (value > 0) & (spread > 0)
  saturation = spread / jnp.where(lit, value, 1.0)
  ratio = jnp.where(lit, jnp.clip(saturation * factor, 0.0, 1.0) / jnp.where(lit, saturation, 1.0),
                    0.0)
  return tuple(value - (value - c) * ratio for c in (r, g, b))


def _adjust_hue(r, g, b, delta):
  """`tf.image.adjust_hue`: the hue rotated by `delta` turns, saturation and value kept.

  tf's HSV gives a pixel with value ≤ 0 saturation 0 (grey); here it keeps its spread, but every
  channel of it stays ≤ its value ≤ 0, so the clip to [0, 1] that follows makes both black.
  """
  value = jnp.maximum(jnp.maximum(r, g), b)
  spread = value - jnp.minimum(jnp.minimum(r, g), b)
  hue = _hue(r, g, b, value, spread) + delta  # In (−1, 2): |delta| ≤ 1.
  hue6 = (hue - jnp.floor(hue)) * 6.0

  def channel(n):
    k = n + hue6
    k = jnp.where(k >= 6.0, k - 6.0, k)
    return value - spread * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)

  return channel(5.0), channel(3.0), channel(1.0)


def colour_jitter(video, colour):
  """video float [B, T, H, W, 3] in [0, 1]; colour [B, 4] (brightness delta, saturation,
  contrast, hue delta, |hue delta| ≤ 1). The identity draw (0, 1, 1, 0) leaves a clip unchanged.

  Computed on the three channel planes (a trailing axis of 3 keeps XLA's CPU loops from
  vectorising), with one pass through HSV (for the hue) instead of tf.image's two: tf.image's
  results within float rounding (tests/test_reader_options.py), at less CPU time per clip
  (bench/colour_augment.py).
  """
  brightness, saturation, contrast, hue = [colour[:, i, None, None, None]
                                           for i in range(4)]
  planes = [video[..., i] + brightness for i in range(3)]
  planes = _adjust_saturation(*planes, saturation)
  planes = [(c - m) * contrast + m
            for c, m in ((c, jnp.mean(c, axis=(2, 3), keepdims=True)) for c in planes)]
  planes = _adjust_hue(*planes, hue)
  return jnp.clip(jnp.stack(planes, axis=-1), 0.0, 1.0)


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
