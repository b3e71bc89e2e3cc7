"""Fine-tuning on HMDB51 (the FT column of the MMV table): a pretrained video backbone and a
linear classifier, end to end (mmv/methods/finetune.py). Launch (W: a training run's workdir,
only read; D: HMDB51 in its official layout; N: split 1, 2 or 3):

    python -m mmv.finetune --benchmark hmdb51 --data_dir D --workdir W --output W_FT --split N

Overrides need the config named: `--config configs/finetune_hmdb51.py --config.finetune.epochs=8`
(a typo is an error). The MMV paper's appendix gives the optimiser's form (SGD with momentum
0.9, the rate × gamma at given steps, weight decay on the classifier only) but its HMDB51
values are not at hand: the `finetune` block defaults to GDT's released fine-tuning protocol
(12 epochs of 10 clips per video, batch 32, backbone lr 2.5e-4, classifier lr 2.5e-3, weight
decay 5e-3, 2 warm-up epochs, × 0.05 at epochs 6 and 10, 32-frame clips, colour jitter, 10
clips × 3 crops at test), the clip input of the released linear script (25 fps, stride 2, short
side 224, 224 crops); the run's record lists which fields no source states.
`:runlocal`: the synthetic benchmark's clip sizes and a few short epochs, for a CPU.
"""

from configs import common


def get_config(arg=None):
  return common.finetune(arg)
