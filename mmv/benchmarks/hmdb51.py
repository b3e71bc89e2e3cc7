"""HMDB51 (Kuehne et al. 2011): 6,766 clips of 51 actions, 3 official 70/30 splits.

Layout (hmdb51_org.rar with each class archive extracted, and test_train_splits.rar):

    DIR/<class>/<video>.avi
    DIR/testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt   `<video>.avi <0|1|2>`

In a split file 1 = training, 2 = test, 0 = not used by that split. Label ids are the
positions of the class directories in sorted order. Videos on the same side of every split
form a part, converted once (a video no split uses is not converted); a split links its parts.
A class directory without its 3 split files, or split files of a class with no directory, is
an error; a listed video missing from its directory is counted as skipped. Frames are stored at
25 fps (`protocols.DEFAULTS`), or at the `fps` option `prepare` is given.
"""

import functools
import os
import re

from mmv.benchmarks import benchmark as bm
from mmv.benchmarks import protocols
from mmv.benchmarks import sources

SPLITS = ('1', '2', '3')
SPLIT_DIR = 'testTrainMulti_7030_splits'
LAYOUT = f'DIR/<class>/*.avi and DIR/{SPLIT_DIR}/<class>_test_split<k>.txt'
ROLES = {'1': 'train', '2': 'test', '0': None}
_SPLIT_FILE = re.compile(r'^(?P<cls>.+)_test_split(?P<split>\d+)\.txt$')


def _split_files(split_dir):
  if not os.path.isdir(split_dir):
    raise FileNotFoundError(f'no official split directory {split_dir} (expected {LAYOUT})')
  files = {}
  for name in sorted(os.listdir(split_dir)):
    match = _SPLIT_FILE.match(name)
    if match and match['split'] in SPLITS:
      files[(match['cls'], match['split'])] = os.path.join(split_dir, name)
  return files


def read_layout(data_dir):
  split_files = _split_files(os.path.join(data_dir, SPLIT_DIR))
  class_names = tuple(sorted(
      d for d in os.listdir(data_dir)
      if os.path.isdir(os.path.join(data_dir, d)) and not d.startswith('.') and d != SPLIT_DIR))
  unknown = sorted({c for c, _ in split_files} - set(class_names))
  if unknown:
    raise ValueError(f'split files of classes {unknown} that have no directory in {data_dir!r}')
  missing = [f'{c}_test_split{s}.txt' for c in class_names for s in SPLITS
             if (c, s) not in split_files]
  if missing:
    raise FileNotFoundError(f'missing official split files {missing[:3]}'
                            f'{" ..." if len(missing) > 3 else ""} in {SPLIT_DIR}')
  clips, membership = {}, {}
  for (class_name, split), path in sorted(split_files.items()):
    with open(path) as f:
      rows = [line.split() for line in f if line.strip()]
    for row in rows:
      if len(row) != 2 or row[1] not in ROLES:
        raise ValueError(f'{path}: expected lines `<video>.avi <0|1|2>`, got {" ".join(row)!r}')
      key = f'{class_name}/{row[0]}'
      if key not in clips:
        video = os.path.join(data_dir, class_name, row[0])
        clips[key] = bm.clip(key, video if os.path.exists(video) else None, labels=[class_name])
        membership[key] = {}
      if ROLES[row[1]]:
        membership[key][split] = ROLES[row[1]]
  return bm.layout_by_membership(clips, membership, SPLITS, class_names)


BENCHMARK = bm.Benchmark(
    name='hmdb51', kind='linear', modality='video', protocols=('linear', 'zero_shot'),
    splits=SPLITS, fps=protocols.DEFAULTS['hmdb51']['fps'], layout=LAYOUT,
    prepare_fn=functools.partial(sources.prepare, read_layout=read_layout))
