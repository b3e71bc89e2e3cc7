"""UCF101 (Soomro et al. 2012): 13,320 videos of 101 actions, 3 official train/test splits.

Layout (the official archives UCF101.rar and UCF101TrainTestSplits-RecognitionTask.zip
extracted side by side):

    DIR/UCF-101/<Class>/v_<Class>_gXX_cYY.avi
    DIR/ucfTrainTestlist/classInd.txt            `1 ApplyEyeMakeup` ... (1-based)
    DIR/ucfTrainTestlist/trainlist0{1,2,3}.txt   `<Class>/v_....avi <class index>`
    DIR/ucfTrainTestlist/testlist0{1,2,3}.txt    `<Class>/v_....avi`

Label ids follow classInd.txt, from 0 (classInd's order is not Python's sorted order: it puts
Hammering before HammerThrow). Every video is in the training or the test list of each split,
so the videos form 4 parts (e.g. `test1_train2_train3`), each converted once; a split links
the 3 parts of its training set and the one of its test set. A listed video is looked up in
its class directory ignoring case (archives differ on `HandStandPushups` vs
`HandstandPushups`); one that is not there is counted as skipped.

Frames are stored at 25 fps (the videos' own rate, at which DeepMind's released evaluation
script reads them; `protocols.DEFAULTS`), or at the `fps` option `prepare` is given. A TFDS
build (`DIR/ucf101/ucf101_{k}/...`, or `ucf101_1_256` for split 1) is read instead when there
is one (25 fps too): see `tfds_source`.
"""

import functools
import os

from mmv.benchmarks import benchmark as bm
from mmv.benchmarks import protocols
from mmv.benchmarks import sources

SPLITS = ('1', '2', '3')
LISTS = 'ucfTrainTestlist'
VIDEO_DIRS = ('UCF-101', 'UCF101')
LAYOUT = (f'DIR/UCF-101/<Class>/v_*.avi and DIR/{LISTS}/{{classInd,trainlist0k,testlist0k}}.txt '
          '(or a TFDS build DIR/ucf101/ucf101_k/)')
FPS_TFDS = 25.0  # TFDS keeps every frame; UCF101 videos are 25 fps.


def _lines(path):
  if not os.path.exists(path):
    raise FileNotFoundError(f'missing the official split file {path} (expected {LAYOUT})')
  with open(path) as f:
    return [line.split() for line in f if line.strip()]


def read_class_index(path):
  """Class names in classInd.txt's order (its 1-based indices checked)."""
  rows = _lines(path)
  if [int(row[0]) for row in rows] != list(range(1, len(rows) + 1)) or any(
      len(row) != 2 for row in rows):
    raise ValueError(f'{path}: expected lines `k ClassName` with k = 1, 2, 3, ...')
  return tuple(row[1] for row in rows)


class _ClassDirs:
  """Finds a listed video in its class directory, ignoring case."""

  def __init__(self, root):
    self.root = root
    self._listings = {}

  def path(self, relative):
    exact = os.path.join(self.root, relative)
    if os.path.exists(exact):
      return exact
    directory, name = os.path.split(relative)
    if directory not in self._listings:
      full = os.path.join(self.root, directory)
      self._listings[directory] = ({n.lower(): n for n in os.listdir(full)}
                                   if os.path.isdir(full) else {})
    found = self._listings[directory].get(name.lower())
    return os.path.join(self.root, directory, found) if found else None


def read_layout(data_dir):
  lists = os.path.join(data_dir, LISTS)
  class_names = read_class_index(os.path.join(lists, 'classInd.txt'))
  class_ids = {name: i for i, name in enumerate(class_names)}
  video_dir = next((os.path.join(data_dir, d) for d in VIDEO_DIRS
                    if os.path.isdir(os.path.join(data_dir, d))), None)
  if video_dir is None:
    raise FileNotFoundError(f'no {" or ".join(VIDEO_DIRS)} directory in {data_dir!r} '
                            f'(expected {LAYOUT})')
  videos = _ClassDirs(video_dir)
  clips, membership = {}, {}
  for split in SPLITS:
    for role, name in (('train', f'trainlist0{split}.txt'), ('test', f'testlist0{split}.txt')):
      path = os.path.join(lists, name)
      for row in _lines(path):
        relative = row[0].replace('\\', '/')
        class_name = relative.split('/')[0]
        if class_name not in class_ids:
          raise ValueError(f'{path}: class {class_name!r} of {relative} is not in classInd.txt')
        if len(row) > 1 and int(row[1]) != class_ids[class_name] + 1:
          raise ValueError(f'{path}: {relative} has class index {row[1]}, but classInd.txt '
                           f'gives {class_name} index {class_ids[class_name] + 1}')
        roles = membership.setdefault(relative, {})
        if roles.get(split, role) != role:
          raise ValueError(f'{relative} is in both the training and the test list of split '
                           f'{split}')
        roles[split] = role
        if relative not in clips:
          clips[relative] = bm.clip(relative, videos.path(relative), labels=[class_name])
  return bm.layout_by_membership(clips, membership, SPLITS, class_names)


def tfds_configs(split):
  return [f'ucf101/ucf101_{split}'] + (['ucf101/ucf101_1_256'] if split == '1' else [])


BENCHMARK = bm.Benchmark(
    name='ucf101', kind='linear', modality='video', protocols=('linear', 'zero_shot'),
    splits=SPLITS, fps=protocols.DEFAULTS['ucf101']['fps'], layout=LAYOUT,
    prepare_fn=functools.partial(sources.prepare, read_layout=read_layout,
                                 tfds_configs=tfds_configs, tfds_fps=FPS_TFDS))
