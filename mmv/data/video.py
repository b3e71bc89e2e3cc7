"""Video ops for tf.data: frame sampling, decoding only the sampled frames, cropping."""

import tensorflow as tf


def sample_indices(num_available, num_frames, stride, *, train, seed):
  """Indices of `num_frames` frames `stride` apart, and the first index.

  Training takes a random offset (stateless, from `seed`); evaluation takes the middle clip.
  Clips longer than the video wrap around, so short videos are padded by repetition.
  """
  span = (num_frames - 1) * stride + 1
  max_offset = tf.maximum(num_available - span, 0)
  if train:
    offset = tf.random.stateless_uniform([], seed, 0, max_offset + 1, dtype=tf.int32)
  else:
    offset = max_offset // 2
  indices = tf.math.floormod(offset + tf.range(num_frames) * stride, num_available)
  return indices, offset


def decode_and_crop(jpegs, crop_size, *, train, seed, scale_jitter=(1.0, 1.0), min_resize=0):
  """Decodes JPEG frames [T] into float32 [T, crop, crop, 3] in [0, 1].

  One crop window is drawn per clip and applied to every frame. Without `min_resize`, only the
  window is decoded (`decode_and_crop_jpeg`); the window side is `crop_size * scale` with the
  scale drawn from `scale_jitter` in training, then resized back to `crop_size`.
  """
  shape = tf.io.extract_jpeg_shape(jpegs[0])
  height, width = shape[0], shape[1]
  if min_resize:
    frames = tf.map_fn(lambda j: tf.io.decode_jpeg(j, channels=3), jpegs,
                       fn_output_signature=tf.uint8)
    scale = min_resize / tf.cast(tf.minimum(height, width), tf.float32)
    height = tf.cast(tf.round(tf.cast(height, tf.float32) * scale), tf.int32)
    width = tf.cast(tf.round(tf.cast(width, tf.float32) * scale), tf.int32)
    frames = tf.image.resize(frames, [height, width], antialias=True)
  seeds = tf.random.experimental.stateless_split(seed, 3)
  if train:
    scale = tf.random.stateless_uniform([], seeds[0], scale_jitter[0], scale_jitter[1])
  else:
    scale = 1.0
  side = tf.cast(tf.round(crop_size * scale), tf.int32)
  side = tf.minimum(side, tf.minimum(height, width))
  if train:
    y = tf.random.stateless_uniform([], seeds[1], 0, height - side + 1, dtype=tf.int32)
    x = tf.random.stateless_uniform([], seeds[2], 0, width - side + 1, dtype=tf.int32)
  else:
    y, x = (height - side) // 2, (width - side) // 2
  if min_resize:
    frames = frames[:, y:y + side, x:x + side, :]
  else:
    window = tf.stack([y, x, side, side])
    frames = tf.map_fn(lambda j: tf.io.decode_and_crop_jpeg(j, window, channels=3), jpegs,
                       fn_output_signature=tf.uint8)
  frames = tf.image.resize(tf.cast(frames, tf.float32), [crop_size, crop_size])
  return tf.clip_by_value(frames / 255.0, 0.0, 1.0)


def random_flip(frames, seed):
  """Flips all frames of a clip left-right with probability 1/2."""
  flip = tf.random.stateless_uniform([], seed) < 0.5
  return tf.cond(flip, lambda: tf.reverse(frames, axis=[2]), lambda: frames)
