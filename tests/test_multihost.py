"""Two processes × 2 CPU devices (gloo collectives): they train like one process with 4 devices,
stop together at a SIGTERM or a Ctrl-C to one of them, agree on checkpoint damage that one of
them alone sees, and a second Ctrl-C aborts the process it goes to at once. One run, stopped
three times, serves the checks of four former tests (here, two in test_workdir_lock.py and one
in test_checkpoint_multihost.py)."""

import glob
import os
import signal

import numpy as np
import pytest

from mmv import checkpoint as ckpt_lib
from tests import ctrl_c_steps
from tests import launching

# Launches processes, converts media or trains: not in `make test-fast`.
pytestmark = pytest.mark.slow

# Every array split over all 4 devices: each process writes (and restores) its half alone, in
# state/ocdbt.process_<i>, so damage to process 1's files fails process 1's read only.
SPLIT = ['--config.mesh.fsdp=4', "--config.mesh.param_rules=(('.*', 'fsdp'),)"]
TIMEOUT = 300  # Seconds per run of both processes; a hang (the processes disagree) fails.


def _start(workdir, data_dir, steps, script='launch.py'):
  """Both processes of a run, with a checkpoint at every step."""
  return launching.start_processes(workdir, data_dir, f'--config.train.steps={steps}',
                                   '--config.train.checkpoint_every=1', *SPLIT, script=script)


def _tree(directory):
  return sorted((os.path.relpath(p, directory), os.path.getsize(p))
                for p in glob.glob(os.path.join(directory, '**'), recursive=True))


def test_two_processes_match_one_stop_together_and_agree_on_damage(data_dir, tmp_path):
  """A SIGTERM to process 1 stops both at the same step, each saving its half; process 1's half
  of that checkpoint is then cut short (as by a full disk). The same command again: both
  processes resume from the step before (process 0 alone reports the damage and moves the
  checkpoint aside, kept as it was), re-run the step with the loss logged before, until a Ctrl-C
  to process 1 stops both (exit status 130) with a checkpoint. Losses equal those of one
  process with 4 devices reading the same global batches (to float rounding: the collectives
  sum in another order), which it runs after the others, up to the step of the Ctrl-C only.
  The run is long enough (24 steps) that each stop comes before its
  end: with 6, a quiet machine finished the run while the preemption notice was on its way.
  Resumed once more, two Ctrl-Cs to process 1 abort it at once, saving nothing."""
  steps = 24
  multi, single = str(tmp_path / 'multi'), str(tmp_path / 'single')
  checkpoints = os.path.join(multi, 'checkpoints')

  processes = _start(multi, data_dir, steps)
  processes[0].wait_for(f'step 2/{steps}')
  processes[1].popen.send_signal(signal.SIGTERM)  # Only one host is told; both must stop.
  outputs = launching.finish_together(processes, TIMEOUT)
  preempted_at = ckpt_lib.existing_steps(checkpoints)[-1]
  assert 2 < preempted_at < steps - 2, outputs
  for out in outputs:
    assert f'preempted at step {preempted_at};' in out, out
  assert f'preempted: saved the checkpoint of step {preempted_at};' in outputs[0]
  assert 'step 1/' not in outputs[1]  # Only process 0 logs.
  losses = launching.logged_losses(multi)
  assert sorted(losses) == list(range(1, preempted_at + 1))

  newest = os.path.join(checkpoints, str(preempted_at))
  files = glob.glob(os.path.join(newest, 'state', 'ocdbt.process_1', 'd', '*'))
  assert files  # Process 1 wrote its half.
  for path in files:  # Cut short, as by a full disk.
    os.truncate(path, 10)
  damaged = _tree(newest)

  processes = _start(multi, data_dir, steps)
  processes[0].wait_for(f'step {preempted_at + 1}/{steps}')
  processes[1].popen.send_signal(signal.SIGINT)  # Only one host is told; both must stop.
  ended = [launching.ended(p, timeout=TIMEOUT) for p in processes]
  outputs = [out for _, out, _ in ended]
  interrupted_at = ckpt_lib.existing_steps(checkpoints)[-1]
  assert preempted_at + 1 < interrupted_at < steps, ended
  for status, out, _ in ended:
    assert status == 130 and f'interrupted at step {interrupted_at};' in out, out
    assert f'resumed from step {preempted_at - 1} in' in out, out
  assert (f'interrupted (Ctrl-C): saved the checkpoint of step {interrupted_at}; run the same '
          'command again to resume') in outputs[0]
  assert not os.path.exists(os.path.join(multi, 'lock'))
  skipped = [line for line in outputs[0].splitlines() if line.startswith('skipped checkpoint')]
  assert len(skipped) == 1 and (
      f'skipped checkpoint {preempted_at}: damaged on process 1 (' in skipped[0]), skipped
  assert 'skipped checkpoint' not in outputs[1]
  moved = glob.glob(os.path.join(checkpoints, 'damaged', f'{preempted_at}-*'))
  assert len(moved) == 1 and skipped[0].endswith(f'moved it to {moved[0]}')
  assert _tree(moved[0]) == damaged  # Kept as it was, file for file.

  got = launching.logged_losses(multi)
  assert sorted(got) == list(range(1, interrupted_at + 1))
  assert all(len(v) == 1 for v in got.values())  # One writer; re-run steps logged once.
  # The steps from the older checkpoint again, on the same data: the losses logged before.
  assert {s: got[s] for s in losses} == losses
  # The reference: one process, its steps up to the Ctrl-C's (the config of 24 steps: the same
  # schedule), and no further (a SIGTERM of its own after them, `--stop_after`).
  launching.run(launching.train_args(single, data_dir, f'--config.train.steps={steps}', *SPLIT,
                                     f'--stop_after={interrupted_at}',
                                     script='tests/two_streams.py'), devices=4)
  expected = launching.logged_losses(single)
  assert sorted(expected) == list(range(1, interrupted_at + 1))
  # Float rounding (the collectives sum in another order) compounds with each Adam step: up to
  # the SIGTERM's step within 1e-5, as one run; 5.4e-5 was seen 4 steps after it.
  before, after = [s for s in sorted(got) if s <= preempted_at], [s for s in sorted(got)
                                                                   if s > preempted_at]
  np.testing.assert_allclose([got[s][0] for s in before], [expected[s][0] for s in before],
                             rtol=1e-5)
  np.testing.assert_allclose([got[s][0] for s in after], [expected[s][0] for s in after],
                             rtol=3e-4)

  # Again, and two Ctrl-Cs to process 1 inside a step, which waits for them
  # (tests/ctrl_c_steps.py), so before the step the processes would stop at: that process
  # exits at once (`preemption._exit_now`), saving nothing; the other one would go on until
  # jax.distributed finds it gone (100 s).
  processes = _start(multi, data_dir, steps, script='tests/ctrl_c_steps.py')
  try:
    processes[1].wait_for(ctrl_c_steps.WAITING)
    processes[1].popen.send_signal(signal.SIGINT)
    processes[1].wait_for('press Ctrl-C again to abort')
    processes[1].popen.send_signal(signal.SIGINT)
    status, out, stderr = launching.ended(processes[1], timeout=10)
    assert status == 130 and stderr[-1:] == [
        'aborted by Ctrl-C: nothing saved since the last checkpoint'], stderr
    assert f'resumed from step {interrupted_at} in' in out, out
  finally:
    processes[0].popen.kill()
    processes[0].popen.wait()
  assert ckpt_lib.existing_steps(checkpoints)[-1] == interrupted_at
