"""ESC-50 (Piczak 2015): 2,000 five-second environmental sounds of 50 classes, 5 folds.

Layout (the official repository's archive):

    DIR/audio/<fold>-<source>-<take>-<target>.wav
    DIR/meta/esc50.csv    filename,fold,target,category,esc10,src_file,take

Each fold is a part, converted once; split k tests on fold k and trains on the other four.
Label id = `target` (0-49), class name = its `category`. Audio-only records (no frames).
"""

import csv
import functools
import os

from mmv.benchmarks import benchmark as bm
from mmv.benchmarks import protocols
from mmv.benchmarks import sources

FOLDS = ('1', '2', '3', '4', '5')
COLUMNS = ('filename', 'fold', 'target', 'category')
LAYOUT = 'DIR/audio/*.wav and DIR/meta/esc50.csv'


def _rows(path):
  if not os.path.exists(path):
    raise FileNotFoundError(f'missing the official metadata {path} (expected {LAYOUT})')
  with open(path, newline='') as f:
    reader = csv.DictReader(f)
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
      raise ValueError(f'{path}: no column {missing} (expected {",".join(COLUMNS)},...)')
    return list(reader)


def _class_names(rows, path):
  categories = {}
  for row in rows:
    target = int(row['target'])
    if categories.setdefault(target, row['category']) != row['category']:
      raise ValueError(f'{path}: target {target} is both {categories[target]!r} and '
                       f'{row["category"]!r}')
  if sorted(categories) != list(range(len(categories))):
    raise ValueError(f'{path}: targets {sorted(categories)} are not 0, 1, 2, ...')
  return tuple(categories[i] for i in range(len(categories)))


def read_layout(data_dir):
  path = os.path.join(data_dir, 'meta', 'esc50.csv')
  rows = _rows(path)
  class_names = _class_names(rows, path)
  clips = {f'fold{k}': [] for k in FOLDS}
  for row in sorted(rows, key=lambda r: r['filename']):
    if row['fold'] not in FOLDS:
      raise ValueError(f'{path}: {row["filename"]} is in fold {row["fold"]!r}, not one of '
                       f'{FOLDS}')
    audio = os.path.join(data_dir, 'audio', row['filename'])
    clips[f'fold{row["fold"]}'].append(bm.clip(
        row['filename'], audio if os.path.exists(audio) else None,
        labels=[class_names[int(row['target'])]]))
  splits = {k: {'train': [f'fold{j}' for j in FOLDS if j != k], 'test': [f'fold{k}']}
            for k in FOLDS}
  return bm.Layout(clips=clips, splits=splits, class_names=class_names)


BENCHMARK = bm.Benchmark(
    name='esc50', kind='linear', modality='audio', splits=FOLDS,
    fps=protocols.DEFAULTS['esc50']['fps'], layout=LAYOUT,
    prepare_fn=functools.partial(sources.prepare, read_layout=read_layout))
