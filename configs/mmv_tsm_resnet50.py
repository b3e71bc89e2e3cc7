"""MMV with the TSM-ResNet50 video backbone (23.5M params) and an audio ResNet-50: the paper's
settings.

Launch on a TPU slice or GPU hosts (same command on every host, see the README):

    python launch.py --config configs/mmv_tsm_resnet50.py --workdir gs://BUCKET/mmv_tsm50 \
        --config.data.data_dir=gs://BUCKET/howto100m_audioset \
        --config.model.word2vec=gs://BUCKET/GoogleNews-vectors-negative300.bin.gz

A few minutes on a CPU, the networks at 1/8 width on the synthetic dataset:

    python launch.py --config configs/mmv_tsm_resnet50.py:runlocal --workdir runs/tsm50_local
"""

from configs import common


def get_config(arg=None):
  return common.paper_backbones('tsm_resnet50', arg)
