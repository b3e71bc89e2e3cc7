"""MMV with the S3D-G video backbone (9.1M params) and an audio ResNet-50: the paper's settings.

Launch on a TPU slice or GPU hosts (same command on every host, see the README):

    python launch.py --config configs/mmv_s3d.py --workdir gs://BUCKET/mmv_s3d \
        --config.data.data_dir=gs://BUCKET/howto100m_audioset \
        --config.model.word2vec=gs://BUCKET/GoogleNews-vectors-negative300.bin.gz

A few minutes on a CPU, the networks at 1/8 width on the synthetic dataset:

    python launch.py --config configs/mmv_s3d.py:runlocal --workdir runs/s3d_local

The input goes through space-to-depth and the (2, 4, 4) stem, as in DeepMind's released
S3D-G checkpoint, which `python -m mmv.tools.import_deepmind` converts for this config.
"""

from configs import common


def get_config(arg=None):
  c = common.paper_backbones('s3d_g', arg)
  c.model.space_to_depth = True
  return c
