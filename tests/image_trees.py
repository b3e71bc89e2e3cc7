"""Small PASCAL VOC 2007 and ImageNet trees in their official layouts, written by the tests
(JPEGs by Pillow, annotation XML by hand, meta.mat by scipy.io.savemat)."""

import os

import numpy as np
from PIL import Image

VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
               'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
               'sheep', 'sofa', 'train', 'tvmonitor')  # The VOC2007 devkit's VOCopts.classes.


def write_jpeg(path, seed, size=(48, 36), mode='RGB'):
  rng = np.random.default_rng(seed)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
  Image.fromarray(pixels).convert(mode).save(path, format='JPEG')


def write_corrupt(path):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'wb') as f:
    f.write(b'\xff\xd8\xff\xe0 this is not a JPEG')


def annotation_xml(image_id, objects):
  """VOC annotation XML of `objects` [(class, difficult)], as the devkit's files are laid out."""
  parts = [f'<annotation><folder>VOC2007</folder><filename>{image_id}.jpg</filename>'
           '<size><width>48</width><height>36</height><depth>3</depth></size>']
  for name, difficult in objects:
    parts.append(f'<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>'
                 f'<difficult>{int(difficult)}</difficult><bndbox><xmin>1</xmin><ymin>1</ymin>'
                 '<xmax>20</xmax><ymax>20</ymax></bndbox></object>')
  return ''.join(parts) + '</annotation>\n'


def voc_tree(root, trainval, test, *, corrupt=(), missing=()):
  """DIR/VOCdevkit/VOC2007 with {image_id: [(class, difficult)]} per set; `corrupt` ids get a
  broken JPEG, `missing` ids none. Returns DIR."""
  voc = os.path.join(root, 'VOCdevkit', 'VOC2007')
  for name in ('JPEGImages', 'Annotations', os.path.join('ImageSets', 'Main')):
    os.makedirs(os.path.join(voc, name), exist_ok=True)
  for set_name, images in (('trainval', trainval), ('test', test)):
    with open(os.path.join(voc, 'ImageSets', 'Main', f'{set_name}.txt'), 'w') as f:
      f.write(''.join(f'{i}\n' for i in images))
    for seed, (image_id, objects) in enumerate(images.items()):
      with open(os.path.join(voc, 'Annotations', f'{image_id}.xml'), 'w') as f:
        f.write(annotation_xml(image_id, objects))
      path = os.path.join(voc, 'JPEGImages', f'{image_id}.jpg')
      if image_id in corrupt:
        write_corrupt(path)
      elif image_id not in missing:
        write_jpeg(path, seed=seed + (0 if set_name == 'trainval' else 500))
  return root


def imagenet_meta(path, leaves, extra=()):
  """meta.mat as the devkit's: a `synsets` struct array (ILSVRC2012_ID, WNID, words,
  num_children ...); `leaves` [(id, wnid)] are classes, `extra` [(id, wnid)] inner synsets."""
  from scipy import io as scipy_io  # pylint: disable=g-import-not-at-top
  rows = [(i, w, 0) for i, w in leaves] + [(i, w, 2) for i, w in extra]
  dtype = [('ILSVRC2012_ID', 'O'), ('WNID', 'O'), ('words', 'O'), ('gloss', 'O'),
           ('num_children', 'O'), ('children', 'O'), ('wordnet_height', 'O'),
           ('num_train_images', 'O')]
  synsets = np.array([(np.array([[i]], np.uint16), np.array([w]), np.array([f'words of {w}']),
                       np.array(['gloss']), np.array([[n]], np.uint8),
                       np.zeros((1, n), np.uint16), np.array([[0]], np.uint8),
                       np.array([[10]], np.uint16)) for i, w, n in rows], dtype=dtype)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  scipy_io.savemat(path, {'synsets': synsets.reshape(-1, 1)})
