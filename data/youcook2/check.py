"""Checks a downloaded YouCook2 tree against what `mmv.evaluate --benchmark youcook2` reads.

    python data/youcook2/check.py --data_dir /data/youcook2

The benchmark reader (`mmv.benchmarks.youcook2`) reads the official files, as the evaluation
will; the script prints, per split and side, the clips listed and those on disk, names the
files that are missing, and compares the counts with the published ones. A missing or
malformed official file is an error in one line (status 1), and so is a tree where no listed
file is on disk. Where to get the files: data/youcook2/README.md.

The authors publish 457 validation videos; the number of annotated segments depends
on the annotation release, so it is reported, not compared.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import layout_check  # pylint: disable=g-import-not-at-top,wrong-import-position

from mmv.benchmarks import youcook2  # pylint: disable=g-import-not-at-top,wrong-import-position

PUBLISHED = layout_check.Published()


def main(argv=None):
  layout_check.main('youcook2', youcook2.read_layout, PUBLISHED, argv, doc=__doc__)


if __name__ == '__main__':
  main()
