"""Checks a downloaded MSR-VTT tree against what `mmv.evaluate --benchmark msrvtt` reads.

    python data/msrvtt/check.py --data_dir /data/msrvtt

The benchmark reader (`mmv.benchmarks.msrvtt`) reads the official files, as the evaluation
will; the script prints, per split and side, the clips listed and those on disk, names the
files that are missing, and compares the counts with the published ones. A missing or
malformed official file is an error in one line (status 1), and so is a tree where no listed
file is on disk. Where to get the files: data/msrvtt/README.md.

The 1k-A test list has 1,000 rows, one sentence per video.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import layout_check  # pylint: disable=g-import-not-at-top,wrong-import-position

from mmv.benchmarks import msrvtt  # pylint: disable=g-import-not-at-top,wrong-import-position

PUBLISHED = layout_check.Published(splits={'1k-A': {'test': 1000}})


def main(argv=None):
  layout_check.main('msrvtt', msrvtt.read_layout, PUBLISHED, argv, doc=__doc__)


if __name__ == '__main__':
  main()
