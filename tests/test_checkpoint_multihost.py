"""Damage that one process alone sees: two processes (2 CPU devices each, gloo) agree on it,
resume together from the same older checkpoint, and process 0 alone moves the damaged one."""

import glob
import os

import pytest

from mmv import checkpoint as ckpt_lib
from tests import launching

# Launches processes, converts media or trains: not in `make test-fast`.
pytestmark = pytest.mark.slow

# Every array split over all 4 devices: each process writes (and restores) its half alone, in
# state/ocdbt.process_<i>, so damage to process 1's files fails process 1's read only.
SPLIT = ['--config.mesh.fsdp=4', "--config.mesh.param_rules=(('.*', 'fsdp'),)"]
TIMEOUT = 300  # Seconds per run of both processes; a hang (the processes disagree) fails.


def _run(workdir, data_dir, steps):
  port = launching.free_port()
  return launching.finish_together([launching.Process(launching.train_args(
      workdir, data_dir, f'--config.train.steps={steps}', '--config.train.checkpoint_every=1',
      *SPLIT, f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2',
      f'--process_id={process_id}'), devices=2) for process_id in (0, 1)], TIMEOUT)


def _tree(directory):
  return sorted((os.path.relpath(p, directory), os.path.getsize(p))
                for p in glob.glob(os.path.join(directory, '**'), recursive=True))


def test_damage_one_process_sees_makes_both_resume_from_the_older_step(data_dir, tmp_path):
  workdir = str(tmp_path / 'run')
  checkpoints = os.path.join(workdir, 'checkpoints')
  _run(workdir, data_dir, steps=2)
  assert ckpt_lib.existing_steps(checkpoints) == [1, 2]
  losses = launching.logged_losses(workdir)
  newest = os.path.join(checkpoints, '2')
  files = glob.glob(os.path.join(newest, 'state', 'ocdbt.process_1', 'd', '*'))
  assert files
  for path in files:  # Process 1's arrays of step 2 cut short, as by a full disk.
    os.truncate(path, 10)
  damaged = _tree(newest)

  outputs = _run(workdir, data_dir, steps=2)

  for out in outputs:
    assert 'resumed from step 1 in' in out, out
  skipped = [line for line in outputs[0].splitlines() if line.startswith('skipped checkpoint')]
  assert len(skipped) == 1 and 'skipped checkpoint 2: damaged on process 1 (' in skipped[0]
  assert 'skipped checkpoint' not in outputs[1]
  moved = glob.glob(os.path.join(checkpoints, 'damaged', '2-*'))
  assert len(moved) == 1 and skipped[0].endswith(f'moved it to {moved[0]}')
  assert _tree(moved[0]) == damaged  # Kept as it was, file for file.
  # Step 2 again from step 1, on the same data: the loss the first run logged at step 2.
  assert ckpt_lib.existing_steps(checkpoints) == [1, 2]
  assert launching.logged_losses(workdir) == losses
