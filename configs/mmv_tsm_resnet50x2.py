"""MMV with the TSM-ResNet50x2 video backbone (93.9M params) and an audio ResNet-50: the paper's
best model (settings as in the paper).

Launch on a TPU slice or GPU hosts (same command on every host, see the README); rematerialising
the backbone blocks (`--config.model.remat=True`) trades compute for activation memory:

    python launch.py --config configs/mmv_tsm_resnet50x2.py --workdir gs://BUCKET/mmv_tsm50x2 \
        --config.data.data_dir=gs://BUCKET/howto100m_audioset \
        --config.model.word2vec=gs://BUCKET/GoogleNews-vectors-negative300.bin.gz

A few minutes on a CPU, the networks at 1/8 width on the synthetic dataset:

    python launch.py --config configs/mmv_tsm_resnet50x2.py:runlocal --workdir runs/tsm50x2_local
"""

from configs import common


def get_config(arg=None):
  return common.paper_backbones('tsm_resnet50x2', arg)
