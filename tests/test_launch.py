"""launch.py as a user meets it: one-line errors that leave nothing behind, and a second Ctrl-C.

Ctrl-C's checkpoint, a second launch into a busy workdir and the metrics of a resumed run are
checked on one run in test_preemption.py (test_ctrl_c_sigterm_and_sigkill_resume_exactly).
"""

import json
import os
import signal
import subprocess
import sys

import pytest

from mmv import checkpoint as ckpt_lib
from tests import ctrl_c_steps
from tests import launching
from tests import test_quiet_startup

# Launches processes, converts media or trains: not in `make test-fast`.
pytestmark = pytest.mark.slow

DEVICES = 2
_NOISE = ('WARNING: All log messages', 'I0000', 'W0000', 'E0000')  # TF's and XLA's logging.


def _launch(*args, script='launch.py', raw=False):
  """`script` run to its end: (exit status, stdout, stderr without the logging of TF and XLA;
  `raw`: all of it, from an environment without the variables mmv sets, as a user's shell)."""
  env = dict(os.environ, PYTHONPATH=launching.ROOT)
  if raw:
    env = {k: v for k, v in env.items() if k not in test_quiet_startup.MMV_SETS}
  result = subprocess.run([sys.executable, script, *args], cwd=launching.ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
  lines = result.stderr.splitlines()
  if not raw:
    lines = [l for l in lines if not l.startswith(_NOISE)]
  return result.returncode, result.stdout, lines


MISTAKES = [
    (['--config', 'configs/nope.py'], "no config file 'configs/nope.py'"),
    (['--config', 'configs/tiny.py', '--config.trian.steps=5'],
     "--config.trian.steps: the config has no field 'trian' (Did you mean \"train\""),
    (['--config', 'configs/tiny.py', '--config.data.data_dir=MISSING'],
     "data_dir 'MISSING' does not exist: make the synthetic dataset with"),
    (['--config', 'configs/tiny.py', '--config.data.data_dir='],
     'config.data.data_dir is empty: pass --config.data.data_dir=DIR'),
]


def _mistake(tmp_path, i):
  """(flags with a workdir of their own, the error expected, the workdir) of MISTAKES[i]."""
  flags, expected = MISTAKES[i]
  missing, workdir = str(tmp_path / 'missing'), tmp_path / f'run{i}'
  flags = [f.replace('MISSING', missing) for f in flags] + [f'--workdir={workdir}']
  return flags, expected.replace('MISSING', missing), workdir


def test_a_mistake_ends_in_one_line_and_leaves_no_workdir(tmp_path):
  """launch.py itself: a dataset that is not there, found as training sets up. It starts
  quietly: without TensorFlow's start-up lines (the user's environment: the tests' conftest
  sets TF_CPP_MIN_LOG_LEVEL), the one line is all of stderr. (launch.py's quiet start-up was a
  test of its own in test_quiet_startup.py, one more process.)"""
  flags, expected, workdir = _mistake(tmp_path, 2)
  status, _, stderr = _launch(*flags, raw=True)
  assert status == 1
  assert test_quiet_startup.start_up_lines('\n'.join(stderr)) == [], stderr
  assert len(stderr) == 1 and stderr[0].startswith(f'error: {expected}'), stderr
  assert not workdir.exists()


def test_mistakes_end_in_one_line_and_leave_no_workdir(tmp_path):
  """Every mistake, and --verbose, through launch's flag parsing and `main` as launch.py runs
  them (tests/launch_each.py: one process for all, one start-up)."""
  runs = [_mistake(tmp_path, i) for i in range(len(MISTAKES))]
  verbose = runs[0][0] + ['--verbose']
  status, stdout, stderr = _launch(json.dumps([flags for flags, _, _ in runs] + [verbose]),
                                   script='tests/launch_each.py')
  assert status == 0, stderr
  results = [json.loads(line) for line in stdout.splitlines() if line.startswith('{')]
  assert len(results) == len(runs) + 1, stdout
  for (flags, expected, workdir), result in zip(runs, results):
    lines = result['stderr'].splitlines()
    assert result['status'] == 1, (flags, result)
    assert len(lines) == 1 and lines[0].startswith(f'error: {expected}'), (flags, result)
    assert not workdir.exists()
  # --verbose: the error escapes (Python prints its traceback), not one line.
  assert results[-1] == {'status': None, 'exception': 'FileNotFoundError', 'stderr': ''}


def test_a_second_ctrl_c_aborts_without_a_checkpoint(data_dir, tmp_path):
  """One process (KeyboardInterrupt; with several, test_workdir_lock.py): the first Ctrl-C asks
  for a checkpoint at the step boundary, a second one before it aborts at once, saving nothing.
  Both come inside one step, which waits for them (tests/ctrl_c_steps.py): on a loaded machine,
  a second Ctrl-C sent after the first one's notice could otherwise find the run stopped at the
  step boundary already (saved, exit status 130 too)."""
  # The config of test_preemption's run: its compiled program, once per test session.
  run = launching.Process(
      launching.train_args(str(tmp_path), data_dir, '--config.train.steps=12',
                           '--config.train.checkpoint_every=100', script='tests/ctrl_c_steps.py'),
      DEVICES)
  run.wait_for(ctrl_c_steps.WAITING)
  run.popen.send_signal(signal.SIGINT)
  run.wait_for('press Ctrl-C again to abort')
  run.popen.send_signal(signal.SIGINT)
  status, out, stderr = launching.ended(run, timeout=60)
  assert status == 130, run.output()
  assert stderr[-1:] == ['aborted by Ctrl-C: nothing saved since the last checkpoint'], stderr
  assert 'Traceback' not in run.output() and 'interrupted' not in out, run.output()
  checkpointer = ckpt_lib.Checkpointer(os.path.join(str(tmp_path), 'checkpoints'),
                                       read_only=True)
  assert checkpointer.all_steps() == []
  checkpointer.close()
