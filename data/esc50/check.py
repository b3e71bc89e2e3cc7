"""Checks a downloaded ESC-50 tree against what `mmv.evaluate --benchmark esc50` reads.

    python data/esc50/check.py --data_dir /data/esc50

The benchmark reader (`mmv.benchmarks.esc50`) reads the official files, as the evaluation
will; the script prints, per split and side, the clips listed and those on disk, names the
files that are missing, and compares the counts with the published ones. A missing or
malformed official file is an error in one line (status 1), and so is a tree where no listed
file is on disk. Where to get the files: data/esc50/README.md.

ESC-50 has 2,000 clips, 40 per class, in 5 folds of 400; split k tests on fold k.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import layout_check  # pylint: disable=g-import-not-at-top,wrong-import-position

from mmv.benchmarks import esc50  # pylint: disable=g-import-not-at-top,wrong-import-position

PUBLISHED = layout_check.Published(
    classes=50, splits={k: {'train': 1600, 'test': 400} for k in ('1', '2', '3', '4', '5')})


def main(argv=None):
  layout_check.main('esc50', esc50.read_layout, PUBLISHED, argv, doc=__doc__)


if __name__ == '__main__':
  main()
