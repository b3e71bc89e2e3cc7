"""A synthetic multimodal dataset in the DMVR format, learnable in minutes on a CPU.

Each clip shows one shape moving across a noisy background. Three latent factors, drawn per
clip, drive every modality:

* video: the object's colour, its shape and its direction of motion;
* audio: a tone whose pitch is set by the shape, a second partial whose frequency is set by the
  colour, and an amplitude pulse whose rate is set by the direction;
* text: captions naming the factors ("a red circle moves left"), partial captions ("something
  moving up"), and noise captions from an unrelated vocabulary, so MIL-NCE has both good and bad
  candidates.

The class label is (shape, direction), 16 classes. Generation is deterministic from the seed.

    python -m mmv.data.synthetic --output_dir data/synthetic
"""

import json
import os

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from mmv.data import format as fmt

COLOURS = {
    'red': (220, 40, 40),
    'green': (40, 200, 60),
    'blue': (50, 80, 230),
    'yellow': (230, 220, 40),
    'purple': (170, 50, 200),
}
SHAPES = ('circle', 'square', 'triangle', 'cross')
DIRECTIONS = {'left': (0, -1), 'right': (0, 1), 'up': (-1, 0), 'down': (1, 0)}

SHAPE_PITCH_HZ = {'circle': 220.0, 'square': 330.0, 'triangle': 495.0, 'cross': 740.0}
COLOUR_PARTIAL_HZ = {'red': 1000.0, 'green': 1150.0, 'blue': 1300.0, 'yellow': 1450.0,
                     'purple': 1600.0}
DIRECTION_PULSE_HZ = {'left': 1.5, 'right': 3.0, 'up': 5.0, 'down': 7.5}

NOISE_WORDS = ('today we will cook pasta with garlic and olive oil then add salt pepper '
               'fresh basil tomatoes cheese stir slowly bake oven minutes bread butter '
               'knife cut onion carrot water boil pan heat').split()

CAPTION_TEMPLATES = (
    'a {colour} {shape} moves {direction}',
    'the {colour} {shape} is moving {direction}',
    '{colour} {shape} going {direction}',
)
PARTIAL_TEMPLATES = (
    'a {colour} {shape}',
    'something moving {direction}',
    'the {shape} goes {direction}',
    'a {colour} thing',
)

# The defaults give a dataset of a few tens of MB that the tiny config learns in minutes.
SPLITS = {'train': 1024, 'test': 256}
NUM_SHARDS = {'train': 8, 'test': 2}


def class_names():
  return [f'{s}_{d}' for s in SHAPES for d in DIRECTIONS]


def _shape_mask(shape, size, yy, xx, cy, cx):
  dy, dx = yy - cy, xx - cx
  if shape == 'circle':
    return dy**2 + dx**2 <= size**2
  if shape == 'square':
    return (np.abs(dy) <= size * 0.85) & (np.abs(dx) <= size * 0.85)
  if shape == 'triangle':
    return (dy <= size * 0.8) & (dy >= -size) & (np.abs(dx) <= (dy + size) * 0.6)
  if shape == 'cross':
    w = size * 0.35
    return ((np.abs(dy) <= w) & (np.abs(dx) <= size)) | ((np.abs(dx) <= w) & (np.abs(dy) <= size))
  raise ValueError(shape)


def render_frames(rng, colour, shape, direction, num_frames, frame_size):
  """uint8 frames [T, H, W, 3] of the shape crossing a noisy background."""
  h = w = frame_size
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  size = rng.uniform(0.14, 0.2) * frame_size
  speed = rng.uniform(0.6, 1.0) * (frame_size - 2 * size) / num_frames
  dy, dx = DIRECTIONS[direction]
  # Start so the whole path stays inside the frame along the motion axis.
  along = size + rng.uniform(0, 0.1 * frame_size)
  across = rng.uniform(size, frame_size - size)
  cy0 = across if dy == 0 else (along if dy > 0 else frame_size - along)
  cx0 = across if dx == 0 else (along if dx > 0 else frame_size - along)
  background = rng.uniform(20, 90) + rng.normal(0, 12, size=(h, w, 3))
  rgb = np.array(COLOURS[colour], np.float32) * rng.uniform(0.85, 1.0)
  frames = []
  for t in range(num_frames):
    frame = background + rng.normal(0, 6, size=(h, w, 3))
    mask = _shape_mask(shape, size, yy, xx, cy0 + dy * speed * t, cx0 + dx * speed * t)
    frame[mask] = rgb
    frames.append(frame)
  return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


def render_audio(rng, colour, shape, direction, duration_s, sample_rate):
  """float32 mono waveform in [-1, 1] tied to the same factors as the video."""
  t = np.arange(int(round(duration_s * sample_rate)), dtype=np.float32) / sample_rate
  f0 = SHAPE_PITCH_HZ[shape] * rng.uniform(0.98, 1.02)
  f1 = COLOUR_PARTIAL_HZ[colour] * rng.uniform(0.99, 1.01)
  pulse = DIRECTION_PULSE_HZ[direction]
  phase = rng.uniform(0, 2 * np.pi, size=3)
  envelope = 0.5 + 0.5 * np.sin(2 * np.pi * pulse * t + phase[2]) ** 2
  tone = 0.5 * np.sin(2 * np.pi * f0 * t + phase[0]) + 0.3 * np.sin(2 * np.pi * f1 * t + phase[1])
  wave = envelope * tone + rng.normal(0, 0.05, size=t.shape)
  return np.clip(wave, -1, 1).astype(np.float32)


def make_captions(rng, colour, shape, direction):
  """The informative caption first, then partial and noise captions in random order."""
  words = dict(colour=colour, shape=shape, direction=direction)
  full = CAPTION_TEMPLATES[rng.integers(len(CAPTION_TEMPLATES))].format(**words)
  others = [PARTIAL_TEMPLATES[i].format(**words)
            for i in rng.choice(len(PARTIAL_TEMPLATES), size=rng.integers(1, 3), replace=False)]
  for _ in range(rng.integers(1, 3)):
    others.append(' '.join(rng.choice(NOISE_WORDS, size=rng.integers(3, 7))))
  rng.shuffle(others)
  return [full] + others


def vocabulary():
  """All words the captions can contain, in a fixed order."""
  words = set(NOISE_WORDS) | set(COLOURS) | set(SHAPES) | set(DIRECTIONS)
  for template in CAPTION_TEMPLATES + PARTIAL_TEMPLATES:
    words |= {w for w in template.split() if not w.startswith('{')}
  return sorted(words)


def make_example(rng, index, num_frames, frame_size, fps, sample_rate):
  colour = list(COLOURS)[rng.integers(len(COLOURS))]
  shape = SHAPES[rng.integers(len(SHAPES))]
  direction = list(DIRECTIONS)[rng.integers(len(DIRECTIONS))]
  frames = render_frames(rng, colour, shape, direction, num_frames, frame_size)
  wave = render_audio(rng, colour, shape, direction, num_frames / fps, sample_rate)
  label = SHAPES.index(shape) * len(DIRECTIONS) + list(DIRECTIONS).index(direction)
  captions = make_captions(rng, colour, shape, direction)

  _bytes, _ints, _floats = fmt.bytes_feature, fmt.ints_feature, fmt.floats_feature

  jpegs = [tf.io.encode_jpeg(f, quality=90).numpy() for f in frames]
  duration_us = int(num_frames / fps * 1e6)
  context = tf.train.Features(feature={
      fmt.LABEL_INDEX: _ints([label]),
      fmt.LABEL_TEXT: _bytes([class_names()[label].encode()]),
      fmt.CAPTION: _bytes([c.encode() for c in captions]),
      fmt.FILENAME: _bytes([f'synthetic_{index:06d}'.encode()]),
      fmt.START_US: _ints([0]),
      fmt.END_US: _ints([duration_us]),
      fmt.FPS: _floats([fps]),
      fmt.SAMPLE_RATE: _floats([sample_rate]),
  })
  feature_lists = tf.train.FeatureLists(feature_list={
      fmt.IMAGE: tf.train.FeatureList(feature=[_bytes([j]) for j in jpegs]),
      fmt.WAVEFORM: tf.train.FeatureList(feature=[_floats(wave)]),
  })
  return tf.train.SequenceExample(context=context, feature_lists=feature_lists)


def generate(output_dir, *, seed=0, splits=None, num_shards=None, num_frames=20,
             frame_size=40, fps=10.0, sample_rate=4000.0):
  """Writes `output_dir/{split}-0000i-of-0000n` shards, `vocab.txt` and `info.json`."""
  splits = dict(SPLITS if splits is None else splits)
  num_shards = dict(NUM_SHARDS if num_shards is None else num_shards)
  os.makedirs(output_dir, exist_ok=True)
  for split_index, (split, count) in enumerate(sorted(splits.items())):
    shards = num_shards[split]
    writers = [tf.io.TFRecordWriter(os.path.join(output_dir, fmt.shard_name(split, i, shards)))
               for i in range(shards)]
    for i in range(count):
      rng = np.random.default_rng([seed, split_index, i])
      example = make_example(rng, i, num_frames, frame_size, fps, sample_rate)
      writers[i % shards].write(example.SerializeToString())
    for writer in writers:
      writer.close()
  with open(os.path.join(output_dir, 'vocab.txt'), 'w') as f:
    f.write('\n'.join(vocabulary()) + '\n')
  info = dict(seed=seed, splits=splits, num_shards=num_shards, num_frames=num_frames,
              frame_size=frame_size, fps=fps, sample_rate=sample_rate,
              classes=class_names())
  # Written last: its presence marks a complete dataset.
  with open(os.path.join(output_dir, 'info.json'), 'w') as f:
    json.dump(info, f, indent=1)
  return info


flags.DEFINE_string('output_dir', 'data/synthetic', 'Where to write the shards.')
flags.DEFINE_integer('seed', 0, 'Generation seed.')
flags.DEFINE_integer('num_train', SPLITS['train'], 'Training clips.')
flags.DEFINE_integer('num_test', SPLITS['test'], 'Test clips.')
flags.DEFINE_bool('if_absent', False, 'Do nothing when a complete dataset is already there.')


def main(argv):
  del argv
  f = flags.FLAGS
  if f.if_absent and os.path.exists(os.path.join(f.output_dir, 'info.json')):
    print(f'synthetic dataset already in {f.output_dir}')
    return
  tf.config.set_visible_devices([], 'GPU')
  info = generate(f.output_dir, seed=f.seed, splits={'train': f.num_train, 'test': f.num_test})
  print(f'wrote {info["splits"]} clips to {f.output_dir}')


if __name__ == '__main__':
  app.run(main)
