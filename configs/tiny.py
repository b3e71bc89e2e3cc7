"""Tiny MMV on the synthetic dataset: trains on a laptop-class CPU in a few minutes.

Launch (what `make demo` runs):

    python -m mmv.data.synthetic --output_dir data/synthetic --if_absent
    python launch.py --config configs/tiny.py --workdir runs/demo
    python -m mmv.evaluate --benchmark synthetic --data_dir data/synthetic --workdir runs/demo \
        --output runs/demo/eval.json

Overrides are checked against the fields of configs/common.py: `--config.train.steps=50` works,
`--config.trian.steps=50` is an error.
"""

from configs import common


def get_config():
  c = common.on_synthetic_data(common.paper())
  c.model.video_backbone = 'tiny_video'
  c.model.audio_backbone = 'tiny_audio'
  c.model.width = 32
  c.model.dtype = 'float32'
  return c
