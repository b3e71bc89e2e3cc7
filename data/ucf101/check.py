"""Checks a downloaded UCF101 tree against what `mmv.evaluate --benchmark ucf101` reads.

    python data/ucf101/check.py --data_dir /data/ucf101

The benchmark reader (`mmv.benchmarks.ucf101`) reads the official files, as the evaluation
will; the script prints, per split and side, the clips listed and those on disk, names the
files that are missing, and compares the counts with the published ones. A missing or
malformed official file is an error in one line (status 1), and so is a tree where no listed
file is on disk. Where to get the files: data/ucf101/README.md.

The split counts are those of ucfTrainTestlist (13,320 videos, each in the training or
the test list of every split).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import layout_check  # pylint: disable=g-import-not-at-top,wrong-import-position

from mmv.benchmarks import ucf101  # pylint: disable=g-import-not-at-top,wrong-import-position

PUBLISHED = layout_check.Published(
    classes=101, splits={'1': {'train': 9537, 'test': 3783}, '2': {'train': 9586, 'test': 3734},
                         '3': {'train': 9624, 'test': 3696}})


def main(argv=None):
  layout_check.main('ucf101', ucf101.read_layout, PUBLISHED, argv, doc=__doc__)


if __name__ == '__main__':
  main()
