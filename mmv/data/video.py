"""Host-side video ops for tf.data: which frames, which crop, decoding only that.

The host does what only it can do: entropy-decode the JPEGs of the sampled frames, and only
the rows and columns of the crop (`decode_and_crop_jpeg`). The crop is handed over as uint8,
with the random draws for flip and colour; the device turns that into the float clip
(`mmv.data.augment`). Float clips are 4x the bytes of
uint8 and the resize and colour passes over them cost more than the decoding itself on a CPU
host, so they run where the model runs.
"""

import math

import tensorflow as tf

# Colour augmentation of MMV (the paper's training input): brightness ±32/255, saturation and
# contrast ×[0.6, 1.4], hue ±0.2, applied to a clip with probability 0.8.
COLOUR_PROBABILITY = 0.8
MAX_BRIGHTNESS_DELTA = 32.0 / 255.0
SATURATION_RANGE = (0.6, 1.4)
CONTRAST_RANGE = (0.6, 1.4)
MAX_HUE_DELTA = 0.2
IDENTITY_COLOUR = (0.0, 1.0, 1.0, 0.0)  # (brightness delta, saturation, contrast, hue delta)


# How clip offsets are chosen (`clip_offsets`): 'mmv', or 'dmvr' as DeepMind's released UCF101
# evaluation (its sampling functions are DMVR's) chooses them.
OFFSET_RULES = ('mmv', 'dmvr')


def clip_offsets(num_available, span, *, num_clips, train, seed, rule='mmv', stride=1):
  """First item of each of `num_clips` clips spanning `span` of `num_available` items (a clip
  of frames `stride` apart: span = (frames - 1) * stride + 1).

  'mmv': training draws one offset (stateless, from `seed`) in [0, available - span], 0 when
  fewer are available; evaluation takes the middle clip, or `num_clips` clips evenly spaced
  from the first possible offset to the last, rounded.
  'dmvr': training draws as 'mmv', but a video shorter than the span draws in [0, available)
  (its frames wrap around); evaluation takes linspace(0, available - frames * stride,
  num_clips) truncated (the first offset alone for one clip).
  """
  if rule not in OFFSET_RULES:
    raise ValueError(f'clip offsets rule must be one of {OFFSET_RULES}, got {rule!r}')
  max_offset = tf.maximum(num_available - span, 0)
  if train:
    if num_clips != 1:
      raise ValueError('training samples one clip per example')
    high = max_offset + 1
    if rule == 'dmvr':
      high = tf.where(num_available < span, num_available, high)
    return tf.random.stateless_uniform([1], seed, 0, high, dtype=tf.int32)
  if rule == 'dmvr':
    last = tf.maximum(num_available - span - stride + 1, 0)
    return tf.cast(tf.linspace(0.0, tf.cast(last, tf.float32), num_clips), tf.int32)
  if num_clips == 1:
    return tf.reshape(max_offset // 2, [1])
  spaced = tf.linspace(0.0, tf.cast(max_offset, tf.float32), num_clips)
  return tf.cast(tf.round(spaced), tf.int32)


def frame_indices(offsets, num_frames, stride, num_available):
  """[clips, num_frames] indices; past the end they wrap, so short videos repeat."""
  indices = offsets[:, None] + tf.range(num_frames)[None, :] * stride
  return tf.math.floormod(indices, num_available)


# libjpeg decodes 8x8 blocks in MCUs 16 pixels wide (4:2:0); a crop starting between MCU
# columns costs about a fifth more to decode than one starting on an MCU boundary.
MCU = 16


def window_shape(crop_size, scale_jitter):
  """(height, width) of the uint8 buffer a clip's crop is handed over in: room for the largest
  jittered crop, one MCU wider so the decoded region can start on an MCU column."""
  side = int(math.ceil(crop_size * max(1.0, scale_jitter[1])))
  return side, side + MCU


# Where an evaluation crop lies along the frame's long side (`crop_box`): at its start (left,
# or top), its centre, or its end (right, or bottom); centred along the short side. The 3
# spatial crops of a fine-tuned model's test clips are the 3 positions.
CROP_POSITIONS = ('start', 'centre', 'end')


def crop_box(height, width, *, crop_size, train, seed, scale_jitter, min_resize,
             position='centre'):
  """The crop (y, x, side) in frame pixels.

  The crop is square with side `crop_size * scale` in the frame resized so its short side is
  `min_resize` (not resized when 0); the scale is drawn from `scale_jitter` in training and 1
  in evaluation. Training places it at random, evaluation at `position` (`CROP_POSITIONS`).
  """
  if position not in CROP_POSITIONS:
    raise ValueError(f'crop position must be one of {CROP_POSITIONS}, got {position!r}')
  seeds = tf.random.experimental.stateless_split(seed, 3)
  short = tf.cast(tf.minimum(height, width), tf.float32)
  frame_per_output = short / min_resize if min_resize else 1.0
  scale = (tf.random.stateless_uniform([], seeds[0], scale_jitter[0], scale_jitter[1])
           if train else 1.0)
  side = tf.cast(tf.round(crop_size * scale * frame_per_output), tf.int32)
  side = tf.clip_by_value(side, 1, tf.minimum(height, width))
  if train:
    y = tf.random.stateless_uniform([], seeds[1], 0, height - side + 1, dtype=tf.int32)
    x = tf.random.stateless_uniform([], seeds[2], 0, width - side + 1, dtype=tf.int32)
  else:
    # Along the long side (the width of a square frame), 0, 1 or 2 halves of the room left
    # over; centred along the other.
    halves = CROP_POSITIONS.index(position)
    tall = height > width
    y = tf.where(tall, (height - side) * halves // 2, (height - side) // 2)
    x = tf.where(tall, (width - side) // 2, (width - side) * halves // 2)
  return y, x, side


def _decode(jpegs, window):
  return tf.map_fn(lambda j: tf.io.decode_and_crop_jpeg(j, window, channels=3), jpegs,
                   fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))


def decode_crop(jpegs, box, window):
  """Decodes the crop `box` (y, x, side) of frames [n]; returns (uint8 [n, h, w, 3], crop).

  Only the crop's rows are decoded, and its columns from the MCU column it starts in, so the
  result is at most `side` x `side + 15`; `crop` (y, x, side) is the crop in it. The batch pads
  it to `window` (`padded_batch`: no extra copy). A crop taller than the window (frames bigger
  than `min_resize` plans for) is resized to the window's height on the host.
  """
  y, x, side = box
  rows = window[0]

  def exact():
    left = x // MCU * MCU
    frames = _decode(jpegs, tf.stack([y, left, side, side + x - left]))
    return frames, tf.stack([0, x - left, side])

  def resized():
    frames = tf.image.resize(_decode(jpegs, tf.stack([y, x, side, side])), [rows, rows],
                             antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(frames), 0, 255), tf.uint8), tf.constant([0, 0, rows])

  return tf.cond(side <= rows, exact, resized)


def flip_draw(seed):
  """1.0 (flip left-right) with probability 1/2, else 0.0."""
  return tf.cast(tf.random.stateless_uniform([], seed) < 0.5, tf.float32)


def colour_draw(seed):
  """[4] (brightness delta, saturation, contrast, hue delta); the identity 20% of the time."""
  seeds = tf.random.experimental.stateless_split(seed, 5)
  draw = tf.stack([
      tf.random.stateless_uniform([], seeds[0], -MAX_BRIGHTNESS_DELTA, MAX_BRIGHTNESS_DELTA),
      tf.random.stateless_uniform([], seeds[1], *SATURATION_RANGE),
      tf.random.stateless_uniform([], seeds[2], *CONTRAST_RANGE),
      tf.random.stateless_uniform([], seeds[3], -MAX_HUE_DELTA, MAX_HUE_DELTA),
  ])
  apply = tf.random.stateless_uniform([], seeds[4]) < COLOUR_PROBABILITY
  return tf.where(apply, draw, tf.constant(IDENTITY_COLOUR))
