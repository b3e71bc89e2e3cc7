"""launch.py whose train steps each take SECONDS longer, in Python (signal handlers run during
the wait): time for a test to send signals between two step boundaries.

    python tests/slow_steps.py --config configs/tiny.py --workdir DIR [--config.x=y ...]
"""

import time

from absl import app

import launch
from mmv import train

SECONDS = 3.0


def slowed(compile_train_step):

  def compile_fn(*args):
    step_fn, flops = compile_train_step(*args)

    def step(state, batch):
      time.sleep(SECONDS)
      return step_fn(state, batch)

    return step, flops

  return compile_fn


if __name__ == '__main__':
  train.compile_train_step = slowed(train.compile_train_step)
  app.run(launch.main, flags_parser=launch.parse_flags)
