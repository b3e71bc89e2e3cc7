"""PASCAL VOC 2007 classification (Everingham et al. 2010): 20 classes, multi-label images.

Layout (the official archives VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar
extracted into the same DIR):

    DIR/VOCdevkit/VOC2007/JPEGImages/<id>.jpg
    DIR/VOCdevkit/VOC2007/Annotations/<id>.xml        objects: <name>, <difficult>
    DIR/VOCdevkit/VOC2007/ImageSets/Main/{trainval,test}.txt   one image id a line

(DIR may also be VOCdevkit or VOC2007 itself.) One split, 'test': train on the 5,011 trainval
images, test on the 4,952 test images, each set one part converted once.

Labels follow the VOC2007 devkit's classification ground truth (`VOCevalcls`): for each class
an image is positive (1) when it holds a non-difficult object of the class, "difficult" (0)
when its only objects of the class are marked difficult, negative (-1) otherwise. The devkit
leaves difficult (0) images out of that class's AP; so does the metric here
(`mmv.evaluators.multilabel.voc07_ap`), and so does training: an image difficult for a class is
in neither the positives nor the negatives of that class's SVM. Records store the labels as
class names: the class (positive) or `difficult/<class>`, so the label map holds 40 names,
the 20 classes in the devkit's order then their difficult twins; evaluation reads them
multi-hot and turns them back into 1 / 0 / -1 (`targets`).

Labels come from the Annotations XML (the per-class lists ImageSets/Main/<class>_*.txt the
devkit derives from them are not read). A listed image without its JPEG is skipped and
counted; one that cannot be decoded too (at conversion). A listed image without its
annotation, or an annotation that does not parse, is an error naming the file. A TFDS build
of voc/2007 in DIR is read instead when there is one (`tfds_images`).
"""

import functools
import os
import xml.etree.ElementTree as ET

import numpy as np

from mmv.benchmarks import benchmark as bm
from mmv.benchmarks import tfds_images

# The devkit's order (VOCinit.m's VOCopts.classes).
CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
           'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa',
           'train', 'tvmonitor')
DIFFICULT = 'difficult/'
SPLIT = 'test'
SETS = {'train': 'trainval', 'test': 'test'}
LAYOUT = ('DIR/VOCdevkit/VOC2007/{JPEGImages/<id>.jpg, Annotations/<id>.xml, '
          'ImageSets/Main/{trainval,test}.txt} (or a TFDS build DIR/voc/2007/)')


def find_root(data_dir):
  """The VOC2007 directory under `data_dir` (itself, VOC2007/ or VOCdevkit/VOC2007/)."""
  for root in (os.path.join(data_dir, 'VOCdevkit', 'VOC2007'), os.path.join(data_dir, 'VOC2007'),
               data_dir):
    if os.path.isdir(os.path.join(root, 'ImageSets', 'Main')):
      return root
  raise FileNotFoundError(f'no VOC2007 ImageSets/Main under {data_dir!r} (expected {LAYOUT})')


def read_ids(path):
  if not os.path.exists(path):
    raise FileNotFoundError(f'missing the official image list {path} (expected {LAYOUT})')
  with open(path) as f:
    return [line.split()[0] for line in f if line.strip()]


def read_annotation(path):
  """{class: 1 (a non-difficult object) or 0 (difficult objects only)} of one image."""
  if not os.path.exists(path):
    raise FileNotFoundError(f'missing the annotation {path} of a listed image (expected '
                            f'{LAYOUT})')
  try:
    objects = ET.parse(path).getroot().findall('object')
  except ET.ParseError as e:
    raise ValueError(f'{path}: not an annotation XML ({e})') from None
  labels = {}
  for obj in objects:
    name = (obj.findtext('name') or '').strip()
    if name not in CLASSES:
      raise ValueError(f'{path}: object class {name!r} is not a VOC class')
    difficult = (obj.findtext('difficult') or '0').strip() == '1'
    labels[name] = max(labels.get(name, 0), 0 if difficult else 1)
  return labels


def label_names(labels):
  """The record's label names of {class: 1 | 0}."""
  return [name if value == 1 else DIFFICULT + name
          for name, value in sorted(labels.items(), key=lambda kv: CLASSES.index(kv[0]))]


def targets(multi_hot):
  """[N, 40] multi-hot of the record labels → [N, 20] targets 1 / 0 (difficult) / -1."""
  multi_hot = np.asarray(multi_hot)
  k = len(CLASSES)
  if multi_hot.ndim != 2 or multi_hot.shape[1] != 2 * k:
    raise ValueError(f'VOC labels must be [N, {2 * k}] multi-hot, got {multi_hot.shape}')
  positive, difficult = multi_hot[:, :k] > 0, multi_hot[:, k:] > 0
  return np.where(positive, 1, np.where(difficult, 0, -1)).astype(np.int32)


def read_layout(data_dir):
  root = find_root(data_dir)
  clips = {}
  for part in SETS.values():
    specs = []
    for image_id in read_ids(os.path.join(root, 'ImageSets', 'Main', f'{part}.txt')):
      labels = read_annotation(os.path.join(root, 'Annotations', f'{image_id}.xml'))
      path = os.path.join(root, 'JPEGImages', f'{image_id}.jpg')
      specs.append(bm.clip(image_id, path if os.path.exists(path) else None,
                           labels=label_names(labels)))
    clips[part] = specs
  overlap = {s.name for s in clips['trainval']} & {s.name for s in clips['test']}
  if overlap:
    raise ValueError(f'{root}: images both in trainval and test: {sorted(overlap)[:3]}')
  return bm.Layout(clips=clips, splits={SPLIT: {'train': ['trainval'], 'test': ['test']}},
                   class_names=CLASSES + tuple(DIFFICULT + c for c in CLASSES))


def _tfds_class_names(builder):
  names = tfds_images.label_names(builder)
  if set(names) != set(CLASSES):
    raise ValueError(f'{builder.data_dir}: classes {names} are not the VOC classes')
  return CLASSES + tuple(DIFFICULT + c for c in CLASSES)


def _tfds_labels(example, names):
  """TFDS's labels_no_difficult are the positives, the other classes of `labels` difficult."""
  positive = {names[i] for i in example['labels_no_difficult']}
  difficult = {names[i] for i in example['labels']} - positive
  return label_names({**{n: 0 for n in difficult}, **{n: 1 for n in positive}})


TFDS = tfds_images.Build(
    config='voc/2007', splits={'train': ('train', 'validation'), 'test': ('test',)},
    class_names=_tfds_class_names, labels=_tfds_labels,
    name=lambda example: os.path.splitext(example['image/filename'].decode())[0])

BENCHMARK = bm.Benchmark(
    name='voc2007', kind='linear', modality='image', splits=(SPLIT,), fps=1.0, layout=LAYOUT,
    prepare_fn=functools.partial(tfds_images.prepare, read_layout=read_layout, build=TFDS))
