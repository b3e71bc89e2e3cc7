"""MMV "VA only" with the S3D-G video backbone (9.1M params): video and audio towers trained
with NCE alone, no text. Rows "VA only (ours), S3D-G, AS" and "S3D-G, AS+HT" of the MMV paper's
results table (Alayrac et al. 2020; `python -m mmv.table` prints it).

Launch on a TPU slice or GPU hosts (same command on every host, see the README), on AudioSet:

    python launch.py --config configs/va_s3d.py --workdir gs://BUCKET/va_s3d \
        --config.data.data_dir=gs://BUCKET/audioset

The AS+HT row mixes HowTo100M's clips into each batch (their captions are not read):

    python launch.py --config configs/va_s3d.py --workdir gs://BUCKET/va_s3d_asht \
        --config.data.mixture="(('gs://BUCKET/audioset', 'train', 1.0), \
                                ('gs://BUCKET/howto100m', 'train', 1.0))"

A few minutes on a CPU, the networks at 1/8 width on the synthetic dataset:

    python launch.py --config configs/va_s3d.py:runlocal --workdir runs/va_s3d_local

Heads: the S_va half of MMV's released heads (`model.head` 'disjoint' with towers video and
audio): video → 512 by Linear → BN → ReLU → Linear → BN, audio → 512 by a Linear. Input,
optimiser and batch are the MMV paper's (configs/common.py); the paper's table states no other
settings for its VA-only rows.
"""

from configs import common

VA_ONLY = ('video', 'audio')


def va_only(c):
  """`c` with the video and audio towers only: NCE(video, audio) into S_va (512-d)."""
  c.data.modalities = VA_ONLY
  c.model.towers = VA_ONLY
  c.model.head = 'disjoint'
  c.loss.weight_vt = 0.0  # No text tower, no MIL-NCE term.
  return c


def get_config(arg=None):
  c = va_only(common.paper_backbones('s3d_g', arg))
  c.model.space_to_depth = True  # As configs/mmv_s3d.py (the released S3D-G's stem).
  return c
