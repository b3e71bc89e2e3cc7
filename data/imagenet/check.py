"""Checks a downloaded ImageNet ILSVRC-2012 tree against what `mmv.evaluate --benchmark
imagenet` reads.

    python data/imagenet/check.py --data_dir /data/imagenet

The benchmark reader (`mmv.benchmarks.imagenet`) lists train/<wnid>/ and reads the validation
labels (the devkit's ground truth and meta.mat, or val/<wnid>/ folders, or Kaggle's
LOC_val_solution.csv), as the evaluation will; the script prints the images listed and those
on disk per side (training: train/, test: the validation images), names the validation images
that are missing, and compares the counts with the published ones. A missing or malformed
devkit file is an error in one line (status 1), and so is a tree without images. Listing the
1.28M training files takes a minute or two. Where to get the files: data/imagenet/README.md.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import layout_check  # pylint: disable=g-import-not-at-top,wrong-import-position

from mmv.benchmarks import imagenet  # pylint: disable=g-import-not-at-top,wrong-import-position

PUBLISHED = layout_check.Published(classes=1000,
                                   splits={'val': {'train': 1281167, 'test': 50000}})


def main(argv=None):
  layout_check.main('imagenet', imagenet.read_layout, PUBLISHED, argv, doc=__doc__)


if __name__ == '__main__':
  main()
