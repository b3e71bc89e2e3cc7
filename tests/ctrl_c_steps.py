"""launch.py whose train steps wait for Ctrl-C: a test's two Ctrl-Cs both come in the middle of
a step, however loaded the machine (with steps of fixed length, a slow test could send the
second one after the step boundary, where the run saves and ends as after one Ctrl-C).

    python tests/ctrl_c_steps.py --config configs/tiny.py --workdir DIR [--config.x=y ...]

Each step prints WAITING, then waits in Python (signal handlers run meanwhile) until the run's
SIGINT handler has been replaced, which the first Ctrl-C's handler does, and then for at most
HOLD_SECONDS more, for a second one, before it computes. No Ctrl-C within HOLD_SECONDS: it goes
on as usual.
"""

import signal
import time

from absl import app

from mmv import train
from tests import slow_steps

WAITING = 'train step waiting for Ctrl-C'
HOLD_SECONDS = 120.0


def _wait_for_ctrl_c():
  handler = signal.getsignal(signal.SIGINT)  # The run's; its first Ctrl-C replaces it.
  print(WAITING, flush=True)
  deadline = time.monotonic() + HOLD_SECONDS
  while signal.getsignal(signal.SIGINT) == handler and time.monotonic() < deadline:
    time.sleep(0.05)
  if signal.getsignal(signal.SIGINT) == handler:
    return  # No Ctrl-C.
  deadline = time.monotonic() + HOLD_SECONDS  # For the second one.
  while time.monotonic() < deadline:
    time.sleep(0.05)


if __name__ == '__main__':
  import launch  # pylint: disable=g-import-not-at-top  # Flags: not when a test imports this.
  train.compile_train_step = slow_steps.before_each_step(train.compile_train_step,
                                                         _wait_for_ctrl_c)
  app.run(launch.main, flags_parser=launch.parse_flags)
