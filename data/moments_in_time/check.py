"""Checks a downloaded Moments in Time tree against what `mmv.evaluate --benchmark
moments_in_time` reads.

    python data/moments_in_time/check.py --data_dir /data/moments_in_time

The benchmark reader (`mmv.benchmarks.moments_in_time`) reads the official files, as the
evaluation will; the script prints the classes, the videos listed and on disk for training and
validation beside the published counts, and names the files that are missing. A missing or
malformed official file is an error in one line (status 1), and so is a tree where no listed
file is on disk. Where to get the files: data/moments_in_time/README.md.

Moments in Time has 339 classes, 802,264 training and 33,900 validation videos (100 a class).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import layout_check  # pylint: disable=g-import-not-at-top,wrong-import-position

# pylint: disable-next=g-import-not-at-top,wrong-import-position
from mmv.benchmarks import moments_in_time

PUBLISHED = layout_check.Published(
    classes=339, splits={'validation': {'train': 802264, 'test': 33900}})


def main(argv=None):
  layout_check.main('moments_in_time', moments_in_time.read_layout, PUBLISHED, argv,
                    doc=__doc__)


if __name__ == '__main__':
  main()
