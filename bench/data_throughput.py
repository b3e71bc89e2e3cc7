r"""Clips/s of the training input pipeline against the JPEG-decode bound, in the same run.

    python bench/data_throughput.py [--rounds 5] [--data_dir /tmp/mmv_bench]

The dataset is made by the converter from generated H.264 videos (426x320 at 25 fps with a
48 kHz soundtrack and a caption every 1.5 s): 5 s clips around each caption, stored at 10 fps
with the short side at 256 (256x340 JPEGs) and the audio at 48 kHz.

The pipeline is the paper's training input: 32 frames, 200x200 crops with scale
jitter 0.8-1.2, flip and colour draws, log-mel audio (48 kHz, window 2048, hop 1024, 80 mels),
the 5 captions nearest the clip tokenised to 16 words, batches of 8 per process. It is
measured as host batches per second (what a training host produces; the crop resize, flip and
colour run on the accelerator). The bound is `tf.io.decode_jpeg` alone on the same stored
frames, in clips of 32. Rounds alternate between them, and two ratios are printed:

  wall clock:   pipeline clips/s ÷ parallel decode clips/s, both on all cores at once;
  per CPU-second: pipeline clips per CPU-second ÷ single-thread decode clips per CPU-second,
                i.e. the issue's bound (decode rate × cores ÷ 32) and the pipeline scaled the
                same way, which other processes sharing the machine do not skew.

The device-side video ops are timed on this CPU for reference.
"""

import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import scenes  # pylint: disable=g-import-not-at-top,wrong-import-position
from configs import tiny  # pylint: disable=wrong-import-position
from mmv.data import augment  # pylint: disable=wrong-import-position
from mmv.ingest import clip_lists
from mmv.ingest import convert  # pylint: disable=wrong-import-position
from mmv.data import format as fmt  # pylint: disable=wrong-import-position
from mmv.data import stream  # pylint: disable=wrong-import-position

_ROUNDS = flags.DEFINE_integer('rounds', 5, 'Alternating measurement rounds.')
_SECONDS = flags.DEFINE_float('seconds', 6.0, 'Seconds per measurement.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'Reuse or keep the dataset here.')
_BATCH = flags.DEFINE_integer('batch_size', 8, 'Clips per host batch.')

FRAMES = 32
VIDEO_SECONDS = 20
WORDS = 'cut the onion slowly then add garlic oil salt pepper stir pan heat water boil'.split()


def make_dataset(data_dir):
  if tf.io.gfile.glob(os.path.join(data_dir, 'train-*')):
    return
  videos = os.path.join(data_dir, 'videos')
  os.makedirs(videos, exist_ok=True)
  narration = {}
  for i in range(2):
    scenes.write_video(os.path.join(videos, f'v{i}.mp4'), i, VIDEO_SECONDS)
    starts = np.arange(0.5, VIDEO_SECONDS - 1.5, 1.5)
    rng = np.random.default_rng(i)
    narration[f'v{i}'] = {'start': starts.tolist(), 'end': (starts + 1.0).tolist(),
                          'text': [' '.join(rng.choice(WORDS, 8)) for _ in starts]}
  with open(os.path.join(videos, 'narration.json'), 'w') as f:
    json.dump(narration, f)
  specs = clip_lists.read_narration(os.path.join(videos, 'narration.json'), videos,
                                 min_clip_seconds=5.0, num_captions=8)
  report = convert.convert(specs, data_dir, name='train', num_shards=4,
                           num_workers=os.cpu_count())
  print(convert.format_report(report, data_dir, 'train'), flush=True)


def paper_config(data_dir):
  c = tiny.get_config().data
  c.data_dir = data_dir
  c.num_frames, c.frame_stride, c.fps, c.crop_size = FRAMES, 1, 10.0, 200
  c.scale_jitter, c.random_flip, c.color_augment = (0.8, 1.2), True, True
  c.audio_sample_rate, c.stft_window, c.stft_hop = 48000.0, 2048, 1024
  c.num_mel_bins, c.mel_lower_hz, c.mel_upper_hz = 80, 80.0, 7600.0
  c.max_words, c.num_captions, c.stop_words = 16, 5, ('the', 'then')
  c.shuffle_buffer = 16
  return c


def stored_jpegs(data_dir):
  jpegs = []
  for path in tf.io.gfile.glob(os.path.join(data_dir, 'train-*')):
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
      example = tf.train.SequenceExample.FromString(record)
      frames = example.feature_lists.feature_list[fmt.IMAGE].feature
      jpegs += [f.bytes_list.value[0] for f in frames]
  return jpegs


def cpu_seconds():
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def rate(iterator, seconds, items_per_next):
  """(items per wall second, items per CPU-second of this process) over about `seconds`,
  after a warm-up of two pulls."""
  next(iterator)
  next(iterator)
  start, cpu, n = time.perf_counter(), cpu_seconds(), 0
  while time.perf_counter() - start < seconds:
    next(iterator)
    n += items_per_next
  return n / (time.perf_counter() - start), n / (cpu_seconds() - cpu)


def decode_frames(jpegs, threads):
  ds = tf.data.Dataset.from_tensor_slices(jpegs).repeat()
  ds = ds.map(lambda j: tf.io.decode_jpeg(j, channels=3), num_parallel_calls=threads)
  options = tf.data.Options()
  if threads == 1:
    options.threading.private_threadpool_size = 1
    options.autotune.enabled = False
  return ds.batch(FRAMES).prefetch(2).with_options(options).as_numpy_iterator()


def main(argv):
  del argv
  tf.config.set_visible_devices([], 'GPU')
  data_dir = _DATA_DIR.value or tempfile.mkdtemp(prefix='mmv_bench_')
  make_dataset(data_dir)
  c = paper_config(data_dir)
  jpegs = stored_jpegs(data_dir)
  print(f'{len(jpegs)} stored frames, {np.mean([len(j) for j in jpegs]) / 1e3:.1f} KB each, '
        f'{tf.io.decode_jpeg(jpegs[0]).shape}; {os.cpu_count()} cores; '
        f'load average {os.getloadavg()[0]:.1f}', flush=True)

  rounds = {k: [] for k in ('parallel', 'single_cpu', 'pipeline', 'pipeline_cpu')}
  for r in range(_ROUNDS.value):
    rounds['parallel'].append(rate(decode_frames(jpegs, tf.data.AUTOTUNE), _SECONDS.value, 1)[0])
    rounds['single_cpu'].append(rate(decode_frames(jpegs, 1), _SECONDS.value / 2, 1)[1])
    wall, cpu = rate(stream.train_stream(c, batch_size=_BATCH.value, seed=r), _SECONDS.value,
                     _BATCH.value)
    rounds['pipeline'].append(wall)
    rounds['pipeline_cpu'].append(cpu)
    print(f'round {r}: decode {rounds["parallel"][-1]:.1f} clips/s on all cores, '
          f'{rounds["single_cpu"][-1]:.1f} clips per CPU-s on one; pipeline {wall:.1f} clips/s, '
          f'{cpu:.1f} clips per CPU-s', flush=True)

  host = next(stream.train_stream(c, batch_size=_BATCH.value, seed=0))
  finish = jax.jit(lambda b: augment.finish_batch(b, c))
  arrays = {k: jnp.asarray(v) for k, v in host.items()}
  jax.block_until_ready(finish(arrays))
  start, n = time.perf_counter(), 0
  while time.perf_counter() - start < _SECONDS.value / 2:
    jax.block_until_ready(finish(arrays))
    n += _BATCH.value
  device = n / (time.perf_counter() - start)

  median = {k: statistics.median(v) for k, v in rounds.items()}
  wall = [p / b for p, b in zip(rounds['pipeline'], rounds['parallel'])]
  cpu = [p / b for p, b in zip(rounds['pipeline_cpu'], rounds['single_cpu'])]
  cores = os.cpu_count()
  print(f'\nmedians of {_ROUNDS.value} rounds; {FRAMES} frames at 200x200 with audio and text, '
        f'batch {_BATCH.value}, {cores} cores:')
  print(f'  wall clock      decode bound {median["parallel"]:6.1f} clips/s   pipeline '
        f'{median["pipeline"]:6.1f} clips/s   ratio {statistics.median(wall):.2f} '
        f'({min(wall):.2f}-{max(wall):.2f})')
  print(f'  per CPU-second  decode bound {median["single_cpu"] * cores:6.1f} clips/s   pipeline '
        f'{median["pipeline_cpu"] * cores:6.1f} clips/s   ratio {statistics.median(cpu):.2f} '
        f'({min(cpu):.2f}-{max(cpu):.2f})   (x {cores} cores)')
  print(f'  device-side video ops (JAX) on this CPU: {device:.1f} clips/s '
        '(on the accelerator in training)')
  print(f'  load average at the end: {os.getloadavg()[0]:.1f}')
  if not _DATA_DIR.value:
    shutil.rmtree(data_dir)


if __name__ == '__main__':
  app.run(main)
