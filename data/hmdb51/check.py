"""Checks a downloaded HMDB51 tree against what `mmv.evaluate --benchmark hmdb51` reads.

    python data/hmdb51/check.py --data_dir /data/hmdb51

The benchmark reader (`mmv.benchmarks.hmdb51`) reads the official files, as the evaluation
will; the script prints, per split and side, the clips listed and those on disk, names the
files that are missing, and compares the counts with the published ones. A missing or
malformed official file is an error in one line (status 1), and so is a tree where no listed
file is on disk. Where to get the files: data/hmdb51/README.md.

Each split file marks 70 training and 30 test videos of its class (51 classes: 3,570
and 1,530 per split); the other videos of the class are unused by that split.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import layout_check  # pylint: disable=g-import-not-at-top,wrong-import-position

from mmv.benchmarks import hmdb51  # pylint: disable=g-import-not-at-top,wrong-import-position

PUBLISHED = layout_check.Published(
    classes=51, splits={k: {'train': 3570, 'test': 1530} for k in ('1', '2', '3')})


def main(argv=None):
  layout_check.main('hmdb51', hmdb51.read_layout, PUBLISHED, argv, doc=__doc__)


if __name__ == '__main__':
  main()
