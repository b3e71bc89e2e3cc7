"""Fine-tuning on the synthetic benchmark (the demo; seconds to a minute on a CPU): the
CPU-sized fine-tuning protocol (`configs/common.py`, `finetune('runlocal')`).

    python launch.py --config configs/tiny.py --workdir runs/demo
    python -m mmv.finetune --benchmark synthetic --data_dir data/synthetic --workdir runs/demo \
        --output runs/demo_ft

Overrides: `--config configs/finetune_synthetic.py --config.finetune.epochs=2`.
"""

from configs import common


def get_config(arg=None):
  del arg
  return common.finetune('runlocal')
