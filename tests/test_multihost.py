"""Two processes × 2 CPU devices (gloo collectives) train like one process with 4 devices."""

import signal

import numpy as np
import pytest

from mmv import checkpoint as ckpt_lib
from tests import launching

# Launches processes, converts media or trains: not in `make test-fast`.
pytestmark = pytest.mark.slow


def _start(workdir, data_dir, port, process_id, steps):
  return launching.Process(launching.train_args(
      workdir, data_dir, f'--config.train.steps={steps}', '--config.train.checkpoint_every=100',
      f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2',
      f'--process_id={process_id}'), devices=2)


def test_two_processes_match_one_and_stop_together_on_sigterm(data_dir, tmp_path):
  """Losses equal (to float rounding: the collectives sum in another order) until a SIGTERM to
  one process stops both at the same step, with a checkpoint both wrote. The run is long enough
  (24 steps) that the stop comes before its end: with 6, a quiet machine finished the run while
  the preemption notice was on its way."""
  steps = 24
  multi, single = str(tmp_path / 'multi'), str(tmp_path / 'single')
  reference = launching.Process(launching.train_args(
      single, data_dir, f'--config.train.steps={steps}', script='tests/two_streams.py'),
                                devices=4)
  port = launching.free_port()
  processes = [_start(multi, data_dir, port, p, steps) for p in (0, 1)]
  processes[0].wait_for(f'step 2/{steps}')
  processes[1].popen.send_signal(signal.SIGTERM)  # Only one host is told; both must stop.
  outputs = [p.finish() for p in processes]
  stopped = ckpt_lib.Checkpointer(f'{multi}/checkpoints', read_only=True).all_steps()
  assert len(stopped) == 1 and 2 < stopped[0] < steps, stopped  # Only the preemption save.
  for out in outputs:
    assert f'preempted at step {stopped[0]}' in out

  assert 'step 1/' not in outputs[1]  # Only process 0 logs.

  reference.finish()
  got, expected = launching.logged_losses(multi), launching.logged_losses(single)
  assert sorted(got) == list(range(1, stopped[0] + 1))
  assert all(len(v) == 1 for v in got.values())  # One writer.
  np.testing.assert_allclose([got[s][0] for s in sorted(got)],
                             [expected[s][0] for s in sorted(got)], rtol=1e-5)
