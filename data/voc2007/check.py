"""Checks a downloaded PASCAL VOC 2007 tree against what `mmv.evaluate --benchmark voc2007`
reads.

    python data/voc2007/check.py --data_dir /data/voc

The benchmark reader (`mmv.benchmarks.voc2007`) reads ImageSets/Main/{trainval,test}.txt and
every listed image's Annotations XML, as the evaluation will; the script prints the images
listed and those on disk per side (training: trainval, test: test), names the images that are
missing, and compares the counts with the published ones. A missing list or annotation is an
error in one line (status 1), and so is a tree where no listed image is on disk. Where to get
the files: data/voc2007/README.md.
"""

import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import layout_check  # pylint: disable=g-import-not-at-top,wrong-import-position

from mmv.benchmarks import voc2007  # pylint: disable=g-import-not-at-top,wrong-import-position

PUBLISHED = layout_check.Published(classes=20,
                                   splits={'test': {'train': 5011, 'test': 4952}})


def read_layout(data_dir):
  """The reader's layout with the 20 classes (records also name their difficult twins)."""
  return dataclasses.replace(voc2007.read_layout(data_dir), class_names=voc2007.CLASSES)


def main(argv=None):
  layout_check.main('voc2007', read_layout, PUBLISHED, argv, doc=__doc__)


if __name__ == '__main__':
  main()
