r"""Bytes per clip and the training pipeline's speed with the waveform stored as float or int16.

    python bench/audio_format.py [--rounds 5] [--seconds 6] [--data_dir /tmp/mmv_audio_bench]

The same clips as bench/data_throughput.py (5 s around each caption of two generated 426x320
H.264 + AAC videos, 10 fps, 256 px JPEGs, 48 kHz audio) are converted twice, with
`--audio_format float` (DMVR's float list, the default) and `int16` (16-bit PCM). Printed: the
shard bytes per clip and the waveform's share of them, and the paper's training pipeline (32
frames at 200x200, log-mel audio, 5 captions; host batches of 8) in clips per wall second and
per CPU-second of this process, in rounds alternating between the two datasets; medians with
min-max over the rounds.
"""

import os
import shutil
import statistics
import sys
import tempfile

from absl import app
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import data_throughput  # pylint: disable=g-import-not-at-top,wrong-import-position
from mmv.ingest import clip_lists  # pylint: disable=wrong-import-position
from mmv.ingest import clip_records  # pylint: disable=wrong-import-position
from mmv.ingest import convert  # pylint: disable=wrong-import-position
from mmv.data import stream  # pylint: disable=wrong-import-position

# Flags --rounds, --seconds, --batch_size and --data_dir (here: where the two datasets are kept
# or reused) are data_throughput's.

FORMATS = ('float', 'int16')


def make_datasets(root):
  """root/float and root/int16: the same clips converted both ways."""
  data_throughput.make_dataset(os.path.join(root, 'float'))  # Makes the videos, float default.
  videos = os.path.join(root, 'float', 'videos')
  out = os.path.join(root, 'int16')
  if not tf.io.gfile.glob(os.path.join(out, 'train-*')):
    specs = clip_lists.read_narration(os.path.join(videos, 'narration.json'), videos,
                                      min_clip_seconds=5.0, num_captions=8)
    convert.convert(specs, out, name='train', num_shards=4, num_workers=os.cpu_count(),
                    audio_format='int16', progress=False)


def sizes(data_dir):
  """(clips, shard bytes, waveform bytes) of the train split."""
  clips = total = audio = 0
  for path in tf.io.gfile.glob(os.path.join(data_dir, 'train-*')):
    total += os.path.getsize(path)
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
      waveform = clip_records.waveform_of(tf.train.SequenceExample.FromString(record))
      clips += 1
      audio += 0 if waveform is None else waveform.size
  return clips, total, audio


def main(argv):
  del argv
  kept = data_throughput._DATA_DIR.value  # pylint: disable=protected-access
  root = kept or tempfile.mkdtemp(prefix='mmv_audio_bench_')
  make_datasets(root)
  configs = {f: data_throughput.paper_config(os.path.join(root, f)) for f in FORMATS}
  rounds = {f: {'wall': [], 'cpu': []} for f in FORMATS}
  batch = data_throughput._BATCH.value  # pylint: disable=protected-access
  seconds = data_throughput._SECONDS.value  # pylint: disable=protected-access
  for r in range(data_throughput._ROUNDS.value):  # pylint: disable=protected-access
    for f in FORMATS:
      wall, cpu = data_throughput.rate(stream.train_stream(configs[f], batch_size=batch, seed=r),
                                       seconds, batch)
      rounds[f]['wall'].append(wall)
      rounds[f]['cpu'].append(cpu)
      print(f'round {r} {f}: {wall:.1f} clips/s, {cpu:.1f} clips per CPU-s', flush=True)
  cores = os.cpu_count()
  print(f'\n{cores} cores, load average at the end {os.getloadavg()[0]:.1f}')
  for f in FORMATS:
    clips, total, samples = sizes(os.path.join(root, f))
    wall, cpu = rounds[f]['wall'], rounds[f]['cpu']
    print(f'{f:5s}: {clips} clips, {total / clips / 2**20:.3f} MiB per clip ({samples / clips:.0f} '
          f'samples); pipeline {statistics.median(wall):.1f} clips/s ({min(wall):.1f}-'
          f'{max(wall):.1f}), {statistics.median(cpu) * cores:.1f} clips per CPU-s x {cores} '
          f'({min(cpu) * cores:.1f}-{max(cpu) * cores:.1f})')
  ratio = [i / f for i, f in zip(rounds['int16']['cpu'], rounds['float']['cpu'])]
  print(f'int16 / float pipeline clips per CPU-s: {statistics.median(ratio):.2f} '
        f'({min(ratio):.2f}-{max(ratio):.2f})')
  if not kept:
    shutil.rmtree(root)


if __name__ == '__main__':
  app.run(main)
