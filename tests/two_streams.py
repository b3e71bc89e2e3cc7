"""launch.py for one process that reads the input as two processes would, for comparisons.

    python tests/two_streams.py --config configs/tiny.py --workdir DIR [--stop_after=N]
        [--config.x=y ...]

Each process of a multi-process run reads its own files; this single process reads the
streams of processes 0 and 1 of 2 and puts them side by side in each global batch, in process
order, which is where a two-process run places them. With the same devices in total, the two
runs then compute on the same global batches. `--stop_after=N`: a SIGTERM once N batches were
taken, so the run ends (preempted) after step N, its config (schedule) that of the whole run:
a comparison needs only the steps the other run took.
"""

import os
import signal
import threading

from absl import app
from absl import flags
from ml_collections import config_flags

from mmv import train
import two_stream_input  # This script's directory (tests/) is on sys.path.

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Work directory.')
_STOP_AFTER = flags.DEFINE_integer('stop_after', None, 'SIGTERM once this many batches were '
                                   'taken: the run stops after that step.')


def stopped_after(num_batches, input_fn):
  """`input_fn` whose batches stop after `num_batches`: it then sends this process a SIGTERM,
  which ends the run at that step (the next batch is waited for in vain)."""

  def stopped(config, mesh, data_state):
    batches, state_after = input_fn(config, mesh, data_state)

    def first():
      for _ in range(num_batches):
        yield next(batches)
      os.kill(os.getpid(), signal.SIGTERM)
      threading.Event().wait(600)  # In the input's daemon thread: the run ends meanwhile.
      raise RuntimeError(f'the run went on after a SIGTERM at step {num_batches}')

    return first(), state_after

  return stopped


def main(argv):
  del argv
  input_fn = two_stream_input.two_stream_batches
  if _STOP_AFTER.value is not None:
    input_fn = stopped_after(_STOP_AFTER.value, input_fn)
  summary = train.train(_CONFIG.value, _WORKDIR.value, input_fn=input_fn)
  print(f'finished at step {summary["step"]}', flush=True)


if __name__ == '__main__':
  app.run(main)
