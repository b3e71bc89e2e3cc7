"""MIL-NCE (Miech et al. 2020, "End-to-End Learning of Visual Representations from Uncurated
Instructional Videos") in MMV's framework: S3D-G video and word2vec text towers, no audio,
trained with MIL-NCE over K = 5 candidate captions per clip. Row "MIL-NCE, S3D-G, HT" of the MMV
paper's results table (`python -m mmv.table` prints it).

Launch on a TPU slice or GPU hosts (same command on every host, see the README), on HowTo100M:

    python launch.py --config configs/milnce_s3d.py --workdir gs://BUCKET/milnce_s3d \
        --config.data.data_dir=gs://BUCKET/howto100m \
        --config.model.word2vec=gs://BUCKET/GoogleNews-vectors-negative300.bin.gz

A few minutes on a CPU, the networks at 1/8 width on the synthetic dataset:

    python launch.py --config configs/milnce_s3d.py:runlocal --workdir runs/milnce_local

As MIL-NCE's released model (antoine77340/S3D_HowTo100M s3dg.py): S3D-G with its plain
(not space-to-depth) stem; frozen 300-d word2vec words → Linear 2048 → ReLU → max over words;
one linear 512-d head per modality, with bias and without BatchNorm, into one space
(`model.head` 'shared', `vat_dim` 512). Departures, for lack of a source at hand or by design:
the embeddings are L2-normalised and divided by τ = 0.07 (MMV's loss; MIL-NCE's released loss
takes raw dot products), and the input and optimiser are the MMV paper's (configs/common.py).
"""

from configs import common

VIDEO_TEXT = ('video', 'text')


def get_config(arg=None):
  c = common.paper_backbones('s3d_g', arg)
  c.data.modalities = VIDEO_TEXT
  c.model.towers = VIDEO_TEXT
  c.model.head = 'shared'
  c.loss.weight_va = 0.0  # No audio tower, no NCE term.
  if arg != 'runlocal':
    c.model.vat_dim = 512  # runlocal keeps the synthetic sizes of configs/common.py.
  return c
