r"""Clips/s of the converter: Apache Beam's DirectRunner against the local multiprocessing path,
on the same inputs, in one run; the output's size per 1,000 clips.

    python bench/convert_throughput.py [--videos 24] [--workers 2] [--rounds 2]

The inputs are generated H.264 videos (426x320 at 25 fps, textured, with moving shapes and
camera noise, and an AAC soundtrack at 48 kHz), 8 s each, listed in a CSV as two clips of 4 s
(HowTo100M's shortest clip around a caption, `--min_clip_seconds 4`). Both paths convert them
with the converter's defaults: 10 fps, short side 256 (256x340 JPEGs, qscale 3), audio at
48 kHz; the local path with `--workers` decoding processes, Beam with as many DirectRunner
workers (multi_processing). Rounds alternate between the two; each converts into a fresh
directory, and the two outputs are checked byte for byte. Times are end to end (Beam's include
starting its worker processes).
"""

import filecmp
import os
import shutil
import statistics
import sys
import tempfile
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import scenes  # pylint: disable=g-import-not-at-top,wrong-import-position
from mmv.ingest import clip_lists
from mmv.ingest import convert  # pylint: disable=wrong-import-position
from mmv.ingest import convert_beam  # pylint: disable=wrong-import-position

_VIDEOS = flags.DEFINE_integer('videos', 24, 'Generated videos (two clips each).')
_WORKERS = flags.DEFINE_integer('workers', 2, 'Local decoding processes = Beam workers.')
_ROUNDS = flags.DEFINE_integer('rounds', 2, 'Alternating rounds.')
_DIR = flags.DEFINE_string('dir', None, 'Keep the videos and outputs here (default: a temp dir).')

SECONDS, CLIP_SECONDS = 8, 4.0


def make_inputs(directory, count):
  csv = os.path.join(directory, 'clips.csv')
  if os.path.exists(csv):
    return csv
  rows = []
  for i in range(count):
    scenes.write_video(os.path.join(directory, f'v{i:03d}.mp4'), i, SECONDS)
    rows += [f'v{i:03d}.mp4,{s},{s + CLIP_SECONDS},label{i % 4},clip {s} of video {i}'
             for s in (0.0, CLIP_SECONDS)]
  with open(csv + '.tmp', 'w') as f:
    f.write('video_path,start,end,label,caption\n' + '\n'.join(rows) + '\n')
  os.replace(csv + '.tmp', csv)
  return csv


def main(argv):
  del argv
  directory = _DIR.value or tempfile.mkdtemp(prefix='mmv-convert-bench-')
  os.makedirs(directory, exist_ok=True)
  csv = make_inputs(directory, _VIDEOS.value)
  num_shards, workers = 4, _WORKERS.value

  def local(out):
    specs, rejected = clip_lists.read_csv(csv, directory)
    return convert.convert(specs, out, name='train', num_shards=num_shards, skipped=rejected,
                           num_workers=workers, progress=False)

  def beam(out):
    return convert_beam.run(out, name='train', num_shards=num_shards, input_csv=csv,
                            video_root=directory,
                            beam_args=['--runner=DirectRunner', f'--direct_num_workers={workers}',
                                       '--direct_running_mode=multi_processing'])

  rates = {'local': [], 'beam': []}
  for r in range(_ROUNDS.value):
    for path, run in (('local', local), ('beam', beam)):
      out = os.path.join(directory, f'{path}{r}')
      shutil.rmtree(out, ignore_errors=True)
      start = time.perf_counter()
      report = run(out)
      seconds = time.perf_counter() - start
      rates[path].append(report['written'] / seconds)
      print(f'round {r} {path}: {report["written"]} clips in {seconds:.1f} s = '
            f'{rates[path][-1]:.2f} clips/s', flush=True)
    names = sorted(os.listdir(os.path.join(directory, f'local{r}')))
    _, mismatch, errors = filecmp.cmpfiles(os.path.join(directory, f'local{r}'),
                                           os.path.join(directory, f'beam{r}'), names,
                                           shallow=False)
    assert not mismatch and not errors, (mismatch, errors)
  size = sum(os.path.getsize(path) for path in report['shards'])  # Beam's, the same bytes.
  local_rate, beam_rate = statistics.median(rates['local']), statistics.median(rates['beam'])
  print(f'{report["written"]} clips of {CLIP_SECONDS:g} s, {workers} workers, medians of '
        f'{_ROUNDS.value} rounds: local {local_rate:.2f} clips/s, Beam DirectRunner '
        f'{beam_rate:.2f} clips/s ({beam_rate / local_rate:.2f}x); outputs byte-identical')
  print(f'output: {size / report["written"] * 1000 / 2**30:.2f} GiB per 1,000 clips '
        f'({size / report["written"] / 2**20:.2f} MiB per clip)')
  if not _DIR.value:
    shutil.rmtree(directory)


if __name__ == '__main__':
  app.run(main)
