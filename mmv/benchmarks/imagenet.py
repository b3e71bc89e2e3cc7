"""ImageNet ILSVRC-2012 classification (Russakovsky et al. 2015): 1,000 classes, top-1 / top-5
of a linear classifier fitted on the 1.28M training images, measured on the 50,000 validation
images.

Layout (the official archives ILSVRC2012_img_train.tar, its per-class tars extracted into
train/<wnid>/, ILSVRC2012_img_val.tar into val/, and ILSVRC2012_devkit_t12.tar.gz):

    DIR/train/<wnid>/<wnid>_<k>.JPEG
    DIR/val/ILSVRC2012_val_00000001.JPEG ... ILSVRC2012_val_00050000.JPEG
    DIR/ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt
    DIR/ILSVRC2012_devkit_t12/data/meta.mat

The ground truth gives, line i for validation image i, its ILSVRC2012_ID (1 to 1,000), which
meta.mat's `synsets` map to WordNet ids (read with scipy.io.loadmat). Also read: validation
images already sorted into val/<wnid>/ folders (the label is the folder), or Kaggle's
`DIR/LOC_val_solution.csv` (ImageId, PredictionString whose first word is the wnid). Classes
are the wnids in sorted order (label id = position; TFDS's and torchvision's order), the 1,000
leaf synsets of meta.mat when it is there, else the train/ folders. A listed image that is
missing or cannot be decoded is skipped and counted. One split, 'val': the training images
are one part, the validation images another, each converted once. A TFDS build of
imagenet2012 in DIR is read instead when there is one (`tfds_images`).
"""

import csv
import functools
import os

import numpy as np

from mmv.benchmarks import benchmark as bm
from mmv.benchmarks import tfds_images

SPLIT = 'val'
DEVKIT = os.path.join('ILSVRC2012_devkit_t12', 'data')
GROUND_TRUTH = 'ILSVRC2012_validation_ground_truth.txt'
KAGGLE_SOLUTION = 'LOC_val_solution.csv'
IMAGE_EXTENSIONS = ('.jpeg', '.jpg', '.png')
LAYOUT = ('DIR/train/<wnid>/*.JPEG, DIR/val/ILSVRC2012_val_*.JPEG and '
          f'DIR/{DEVKIT}/{{{GROUND_TRUTH},meta.mat}} (or DIR/val/<wnid>/*.JPEG, or '
          f'DIR/{KAGGLE_SOLUTION}; or a TFDS build DIR/imagenet2012/)')


def val_name(number):
  """File stem of validation image `number` (1-based)."""
  return f'ILSVRC2012_val_{number:08d}'


def read_meta(path):
  """{ILSVRC2012_ID: wnid} of the 1,000 classes (the leaf synsets) of the devkit's meta.mat."""
  from scipy import io as scipy_io  # pylint: disable=g-import-not-at-top
  try:
    synsets = scipy_io.loadmat(path, squeeze_me=True)['synsets']
  except (OSError, ValueError, KeyError) as e:
    raise ValueError(f'{path}: not the devkit\'s meta.mat with `synsets` ({e})') from None
  ids = [int(x) for x in np.atleast_1d(synsets['ILSVRC2012_ID'])]
  wnids = [str(x) for x in np.atleast_1d(synsets['WNID'])]
  children = (np.atleast_1d(synsets['num_children']) if 'num_children' in synsets.dtype.names
              else np.zeros(len(ids)))
  return {i: w for i, w, n in zip(ids, wnids, children) if int(n) == 0}


def _images(directory):
  """{stem: path} of the image files in `directory`."""
  if not os.path.isdir(directory):
    return {}
  return {os.path.splitext(n)[0]: os.path.join(directory, n) for n in sorted(os.listdir(directory))
          if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS}


def _val_labels(data_dir, val_dir, meta):
  """[(stem, wnid, path or None)] of the validation images, from the first source found."""
  folders = sorted(d for d in os.listdir(val_dir) if os.path.isdir(os.path.join(val_dir, d)))
  if folders:
    return [(stem, wnid, path) for wnid in folders
            for stem, path in _images(os.path.join(val_dir, wnid)).items()]
  files = _images(val_dir)
  truth = os.path.join(data_dir, DEVKIT, GROUND_TRUTH)
  if os.path.exists(truth):
    if meta is None:
      raise FileNotFoundError(f'{truth} needs {os.path.join(data_dir, DEVKIT, "meta.mat")} '
                              'to map its ILSVRC2012_IDs to wnids')
    with open(truth) as f:
      ids = [int(line) for line in f if line.strip()]
    unknown = sorted(set(ids) - set(meta))
    if unknown:
      raise ValueError(f'{truth}: ILSVRC2012_IDs {unknown[:5]} are not classes of meta.mat')
    return [(val_name(k), meta[i], files.get(val_name(k))) for k, i in enumerate(ids, 1)]
  solution = os.path.join(data_dir, KAGGLE_SOLUTION)
  if os.path.exists(solution):
    with open(solution, newline='') as f:
      rows = list(csv.DictReader(f))
    if rows and not {'ImageId', 'PredictionString'} <= set(rows[0]):
      raise ValueError(f'{solution}: expected the columns ImageId,PredictionString')
    return [(r['ImageId'], r['PredictionString'].split()[0], files.get(r['ImageId']))
            for r in sorted(rows, key=lambda r: r['ImageId'])]
  raise FileNotFoundError(f'no validation labels in {data_dir!r}: expected {truth} (with '
                          f'meta.mat), val/<wnid>/ folders or {solution}')


def read_layout(data_dir):
  train_dir, val_dir = os.path.join(data_dir, 'train'), os.path.join(data_dir, 'val')
  for d in (train_dir, val_dir):
    if not os.path.isdir(d):
      raise FileNotFoundError(f'no {d} (expected {LAYOUT})')
  meta_path = os.path.join(data_dir, DEVKIT, 'meta.mat')
  meta = read_meta(meta_path) if os.path.exists(meta_path) else None
  train_classes = sorted(d for d in os.listdir(train_dir)
                         if os.path.isdir(os.path.join(train_dir, d)))
  classes = sorted(meta.values()) if meta else train_classes
  if not classes:
    raise FileNotFoundError(f'no class folders train/<wnid>/ in {data_dir!r}')
  known = set(classes)
  stray = sorted(set(train_classes) - known)
  if stray:
    raise ValueError(f'{train_dir}: folders {stray[:5]} are not classes of {meta_path}')
  train = [bm.clip(f'{wnid}/{stem}', path, labels=[wnid]) for wnid in train_classes
           for stem, path in _images(os.path.join(train_dir, wnid)).items()]
  val = []
  for stem, wnid, path in _val_labels(data_dir, val_dir, meta):
    if wnid not in known:
      raise ValueError(f'validation image {stem} has class {wnid!r}, which is not a class of '
                       f'the training set ({len(classes)} classes)')
    val.append(bm.clip(stem, path, labels=[wnid]))
  if not train or not val:
    raise FileNotFoundError(f'no {"training" if not train else "validation"} image in '
                            f'{data_dir!r} (expected {LAYOUT})')
  return bm.Layout(clips={'train': train, 'val': val},
                   splits={SPLIT: {'train': ['train'], 'test': ['val']}},
                   class_names=tuple(classes))


# TFDS's ClassLabel of imagenet2012 is the wnids, sorted: the raw reader's ids.
TFDS = tfds_images.Build(
    config='imagenet2012', splits={'train': ('train',), 'test': ('validation',)},
    class_names=tfds_images.label_names,
    labels=lambda example, names: [names[int(example['label'])]],
    name=lambda example: os.path.splitext(example['file_name'].decode())[0])

BENCHMARK = bm.Benchmark(
    name='imagenet', kind='linear', modality='image', splits=(SPLIT,), fps=1.0, layout=LAYOUT,
    prepare_fn=functools.partial(tfds_images.prepare, read_layout=read_layout, build=TFDS))
