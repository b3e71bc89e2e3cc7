"""MMV "VA only" with the R(2+1)D-18 video backbone (torchvision's `r2plus1d_18`, 31.3M params
without its classifier; the paper's table writes 33.3M): video and audio towers trained with NCE
alone. Row "VA only (ours), R(2+1)D-18, AS" of the MMV paper's results table, beside XDC and
GDT, which use the same backbone (`python -m mmv.table` prints it).

Launch on a TPU slice or GPU hosts (same command on every host, see the README), on AudioSet:

    python launch.py --config configs/va_r2plus1d18.py --workdir gs://BUCKET/va_r2plus1d18 \
        --config.data.data_dir=gs://BUCKET/audioset

A few minutes on a CPU, the networks at 1/8 width on the synthetic dataset:

    python launch.py --config configs/va_r2plus1d18.py:runlocal --workdir runs/va_r21d_local

Heads, input, optimiser and batch as configs/va_s3d.py (the MMV paper's settings; its table
states no other for this row).
"""

from configs import common
from configs import va_s3d


def get_config(arg=None):
  return va_s3d.va_only(common.paper_backbones('r2plus1d_18', arg))
