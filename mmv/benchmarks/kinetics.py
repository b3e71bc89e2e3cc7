"""Kinetics-400/600/700 (Kay et al. 2017; Carreira et al. 2018, 2019): 10-second YouTube clips
of human actions, official train / validation (/ test) lists.

Layout:

    DIR/**/<split lists>.csv   label,youtube_id,time_start,time_end,split  (train.csv,
                               validate.csv, ... anywhere under DIR; `split` is train, val or
                               validate, test)
    DIR/**/<youtube_id>_<start:06d>_<end:06d>.mp4   a clip cut to [start, end], or
    DIR/**/<youtube_id>.mp4                         the whole video (the clip is cut from it)

Each list split is a part, converted once: split `val` trains on `train` and tests on the
validation list, split `test` (only when the test list has labels) on the test list. Label ids
are the positions of the label names in sorted order. Videos that are not on disk (every
Kinetics download misses some) are counted as skipped.
"""

import csv
import functools
import os

from mmv.benchmarks import benchmark as bm
from mmv.benchmarks import media_index
from mmv.benchmarks import protocols
from mmv.benchmarks import sources

SPLITS = ('val', 'test')
COLUMNS = ('youtube_id', 'time_start', 'time_end', 'split')
SPLIT_NAMES = {'train': 'train', 'val': 'val', 'valid': 'val', 'validate': 'val',
               'validation': 'val', 'test': 'test'}
LAYOUT = ('DIR/**/*.csv (label,youtube_id,time_start,time_end,split) and videos '
          'DIR/**/<youtube_id>_<start:06d>_<end:06d>.mp4 or DIR/**/<youtube_id>.mp4')


def _lists(data_dir):
  """Rows of every CSV under `data_dir` with Kinetics' columns."""
  rows = []
  for directory, subdirs, files in os.walk(data_dir):
    subdirs[:] = sorted(d for d in subdirs if not d.startswith('.'))
    for name in sorted(f for f in files if f.lower().endswith('.csv')):
      path = os.path.join(directory, name)
      with open(path, newline='') as f:
        reader = csv.DictReader(f)
        if set(COLUMNS) <= set(reader.fieldnames or ()):
          rows += [(path, row) for row in reader]
  if not rows:
    raise FileNotFoundError(f'no Kinetics list under {data_dir!r} (expected {LAYOUT})')
  return rows


def _clip(row, videos):
  start, end = float(row['time_start']), float(row['time_end'])
  cut = f'{row["youtube_id"]}_{int(start):06d}_{int(end):06d}'
  if cut in videos:
    return bm.clip(cut, videos[cut][0], labels=[row['label']])
  whole = videos.get(row['youtube_id'], [None])[0]
  return bm.clip(cut, whole, start=start, end=end, labels=[row['label']])


def read_layout(data_dir):
  rows = _lists(data_dir)
  for path, row in rows:
    if row['split'] not in SPLIT_NAMES:
      raise ValueError(f'{path}: split {row["split"]!r} is not one of {sorted(SPLIT_NAMES)}')
  labelled = [(SPLIT_NAMES[row['split']], row) for _, row in rows if row.get('label')]
  class_names = tuple(sorted({row['label'] for _, row in labelled}))
  videos = media_index.media_by_stem(data_dir)
  clips = {}
  for part, row in labelled:
    spec = _clip(row, videos)
    clips.setdefault(part, {})[spec.name] = spec  # A clip listed twice is converted once.
  clips = {part: [specs[k] for k in sorted(specs)] for part, specs in clips.items()}
  if 'train' not in clips:
    raise ValueError(f'no labelled training clip in the Kinetics lists under {data_dir!r}')
  splits = {split: {'train': ['train'], 'test': [split]} for split in SPLITS if split in clips}
  return bm.Layout(clips=clips, splits=splits, class_names=class_names)


BENCHMARK = bm.Benchmark(
    name='kinetics', kind='linear', modality='video', protocols=('linear', 'zero_shot'),
    splits=SPLITS, fps=protocols.DEFAULTS['kinetics']['fps'], layout=LAYOUT,
    prepare_fn=functools.partial(sources.prepare, read_layout=read_layout))
