"""launch.py whose train steps each take SECONDS longer, in Python (signal handlers run during
the wait): time for a test to send signals between two step boundaries.

    python tests/slow_steps.py --config configs/tiny.py --workdir DIR [--config.x=y ...]
"""

import time

from absl import app

from mmv import train

SECONDS = 3.0


def before_each_step(compile_train_step, action):
  """`train.compile_train_step` whose steps call `action()` first (in Python: signal handlers
  run meanwhile)."""

  def compile_fn(*args):
    step_fn, flops = compile_train_step(*args)

    def step(state, batch):
      action()
      return step_fn(state, batch)

    return step, flops

  return compile_fn


if __name__ == '__main__':
  import launch  # pylint: disable=g-import-not-at-top  # Flags: not when a test imports this.
  train.compile_train_step = before_each_step(train.compile_train_step,
                                              lambda: time.sleep(SECONDS))
  app.run(launch.main, flags_parser=launch.parse_flags)
