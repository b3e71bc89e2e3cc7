"""AudioSet (Gemmeke et al. 2017): 10-second YouTube segments, 527 sound classes, multi-label;
measured by an MLP on frozen audio features, mAP on the official eval segments.

Layout: the converter's output of data/audioset/recipe.py, read in place (nothing converted):

    DIR/labels.txt              the class display names in class_labels_indices.csv's order
                                (line k: class k), written by the recipe
    DIR/train-*-of-*            the training segments (balanced_train_segments.csv, or with
    DIR/train.report.json       unbalanced_train_segments.csv), and the converter's report
    DIR/eval-*-of-*             the official eval segments (eval_segments.csv)
    DIR/eval.report.json

made by the recipe and `python -m mmv.ingest.convert` with `--name train` and `--name eval`
into the same DIR (data/audioset/README.md). Every label of a segment is kept: the recipe
writes them all, the converter stores all their ids in `clip/label/index`, and evaluation reads
them multi-hot over labels.txt's classes. One split, 'eval': train on `train`, test on `eval`.
The counts come from the converter's reports (segments written; those it skipped, by name);
segments the recipe found no video for are in the recipe's report, not here.
"""

import glob
import json
import os

import tensorflow as tf

from mmv.benchmarks import benchmark as bm
from mmv.benchmarks import protocols
from mmv.data import format as fmt
from mmv.ingest import clip_records

SPLIT = 'eval'
SIDES = {'train': 'train', 'test': 'eval'}  # Prepared side → the converter's --name.
LAYOUT = ('DIR/labels.txt, DIR/{train,eval}-*-of-* and DIR/{train,eval}.report.json (the '
          'converter\'s output of data/audioset/recipe.py, --name train and --name eval)')
PUBLISHED_CLASSES = 527


def read_class_names(data_dir):
  path = os.path.join(data_dir, fmt.LABEL_MAP)
  if not os.path.exists(path):
    raise FileNotFoundError(f'no {path} (expected {LAYOUT})')
  with open(path) as f:
    names = tuple(line.rstrip('\n') for line in f if line.strip())
  if not names:
    raise ValueError(f'{path} lists no class')
  return names


def _side(data_dir, name):
  pattern = os.path.join(data_dir, f'{name}-*-of-*')
  files = tuple(sorted(glob.glob(os.path.join(glob.escape(data_dir), f'{name}-*-of-*'))))
  report_path = os.path.join(data_dir, clip_records.report_name(name))
  if not files or not os.path.exists(report_path):
    raise FileNotFoundError(f'no {name}-*-of-* shards with their {os.path.basename(report_path)}'
                            f' in {data_dir!r} (expected {LAYOUT})')
  with open(report_path) as f:
    report = json.load(f)
  missing = sorted(set(report['shards']) - {os.path.basename(p) for p in files})
  if missing:
    raise FileNotFoundError(f'{report_path} lists shards that are not in {data_dir!r}: '
                            f'{missing[:3]}')
  return bm.Shards(split=name, pattern=pattern, files=files, num_clips=int(report['written']),
                   skipped=tuple(tuple(s) for s in report['skipped']))


def stored_fps(files):
  """The frame rate the first record of `files` was converted at (the converter's default
  when it says none): it sets the audio window of `num_frames` frames."""
  for record in tf.data.TFRecordDataset(list(files)).take(1).as_numpy_iterator():
    value = tf.train.SequenceExample.FromString(record).context.feature[fmt.FPS]
    return float(value.float_list.value[0]) if value.float_list.value else fmt.DEFAULT_FPS
  raise ValueError(f'no record in {files[0]} ...')


def prepare(benchmark, data_dir, cache_dir, splits, options):
  """{'eval': Prepared} of the shards in `data_dir` (cache_dir and options do not apply)."""
  del cache_dir, splits, options
  class_names = read_class_names(data_dir)
  train, test = (_side(data_dir, SIDES[role]) for role in bm.ROLES)
  return {SPLIT: bm.Prepared(
      benchmark=benchmark.name, split=SPLIT, data_dir=data_dir, train=train, test=test,
      class_names=class_names, source='shards', fps=stored_fps(test.files))}


BENCHMARK = bm.Benchmark(
    name='audioset', kind='linear', modality='audio', splits=(SPLIT,),
    fps=protocols.DEFAULTS['audioset']['fps'], layout=LAYOUT, prepare_fn=prepare,
    protocols=('mlp',))
