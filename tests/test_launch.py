"""launch.py as a user meets it: one-line errors that leave nothing behind, Ctrl-C, a second
launch into a busy workdir, and the metrics of a resumed run."""

import json
import os
import signal
import subprocess
import sys

import pytest
import tensorflow as tf

from mmv import checkpoint as ckpt_lib
from tests import launching

# Launches processes, converts media or trains: not in `make test-fast`.
pytestmark = pytest.mark.slow

DEVICES = 2


def _latest_step(workdir):
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), read_only=True)
  step = checkpointer.latest_step()
  checkpointer.close()
  return step


def _launch(*args):
  """launch.py run to its end: (exit status, stderr without the logging of TF and XLA)."""
  result = subprocess.run([sys.executable, 'launch.py', *args], cwd=launching.ROOT,
                          env=dict(os.environ, PYTHONPATH=launching.ROOT),
                          capture_output=True, text=True, timeout=300)
  lines = [l for l in result.stderr.splitlines()
           if not l.startswith(('WARNING: All log messages', 'I0000', 'W0000', 'E0000'))]
  return result.returncode, lines


@pytest.mark.parametrize('flags, expected', [
    (['--config', 'configs/nope.py'], "no config file 'configs/nope.py'"),
    (['--config', 'configs/tiny.py', '--config.trian.steps=5'],
     "--config.trian.steps: the config has no field 'trian' (Did you mean \"train\""),
    (['--config', 'configs/tiny.py', '--config.data.data_dir=MISSING'],
     "data_dir 'MISSING' does not exist: make the synthetic dataset with"),
    (['--config', 'configs/tiny.py', '--config.data.data_dir='],
     'config.data.data_dir is empty: pass --config.data.data_dir=DIR'),
])
def test_mistakes_end_in_one_line_and_leave_no_workdir(tmp_path, flags, expected):
  workdir = tmp_path / 'run'
  flags = [f.replace('MISSING', str(tmp_path / 'missing')) for f in flags]
  expected = expected.replace('MISSING', str(tmp_path / 'missing'))
  status, stderr = _launch(*flags, f'--workdir={workdir}')
  assert status == 1
  assert len(stderr) == 1 and stderr[0].startswith(f'error: {expected}'), stderr
  assert not workdir.exists()
  if 'nope' in expected:  # --verbose: the traceback too.
    status, stderr = _launch(*flags, f'--workdir={workdir}', '--verbose')
    assert status == 1 and stderr[0] == 'Traceback (most recent call last):', stderr


def test_ctrl_c_saves_a_checkpoint_and_a_second_one_aborts(data_dir, tmp_path):
  steps = 50
  args = launching.train_args(str(tmp_path), data_dir, f'--config.train.steps={steps}',
                              '--config.train.checkpoint_every=100')
  run = launching.Process(args, DEVICES)
  run.wait_for(f'step 2/{steps}')
  run.popen.send_signal(signal.SIGINT)
  out, _ = run.popen.communicate(timeout=300)
  assert run.popen.returncode == 130, run.output()
  stopped = _latest_step(str(tmp_path))
  assert 2 <= stopped < steps
  assert (f'interrupted (Ctrl-C): saved the checkpoint of step {stopped}; run the same '
          'command again to resume') in out.splitlines()
  assert 'Traceback' not in run.output()

  # Steps of 3 s: the second Ctrl-C comes in the middle of the step after the first one's.
  run = launching.Process(
      launching.train_args(str(tmp_path), data_dir, f'--config.train.steps={steps}',
                           '--config.train.checkpoint_every=100',
                           script='tests/slow_steps.py'), DEVICES)
  run.wait_for(f'step {stopped + 1}/{steps}')
  run.popen.send_signal(signal.SIGINT)
  run.wait_for('press Ctrl-C again to abort')
  run.popen.send_signal(signal.SIGINT)
  run.popen.communicate(timeout=60)
  assert run.popen.returncode == 130, run.output()
  assert 'aborted by Ctrl-C: nothing saved since the last checkpoint' in run.output()
  assert 'Traceback' not in run.output()
  assert _latest_step(str(tmp_path)) == stopped  # Aborted before the step boundary.


def _tensorboard_scalars(directory):
  """{(step, tag): [values]} as TensorBoard shows them: a file's session START at step s
  supersedes the earlier files' events from step s on (tensorboardX's `purge_step`)."""
  scalars = {}
  for name in sorted(os.listdir(directory)):  # Event file names start with their time.
    for event in tf.compat.v1.train.summary_iterator(os.path.join(directory, name)):
      if event.HasField('session_log') and event.session_log.status == event.session_log.START:
        scalars = {k: v for k, v in scalars.items() if k[0] < event.step}
      for value in event.summary.value:
        scalars.setdefault((event.step, value.tag), []).append(value.simple_value)
  return scalars


def test_second_launch_refused_stale_lock_taken_over_and_each_step_logged_once(
    data_dir, tmp_path):
  steps = 10
  workdir = str(tmp_path)
  args = launching.train_args(workdir, data_dir, f'--config.train.steps={steps}',
                              '--config.train.checkpoint_every=2')
  first = launching.Process(args, DEVICES)
  first.wait_for(f'step 5/{steps}')  # The checkpoint of step 2 is likely complete by then.
  first.popen.send_signal(signal.SIGSTOP)  # Alive, holding the lock, not training.

  status, stderr = _launch(*args[1:])
  assert status == 1, stderr
  assert len(stderr) == 1 and stderr[0].startswith(
      f'error: {workdir} is in use by pid {first.popen.pid} on host '), stderr

  first.popen.kill()  # Its lock stays behind, stale.
  first.popen.wait()
  assert os.path.exists(os.path.join(workdir, 'lock'))
  killed_at = _latest_step(workdir) or 0
  assert killed_at < steps
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    assert max(json.loads(line)['step'] for line in f) > killed_at  # Steps to log again.

  # Same host, pid gone: taken over once its heartbeat has missed 3 beats (3 s here; 90 s with
  # the default threshold, which the run would wait for).
  out = launching.run(args + ['--lock_stale_after=10'], DEVICES)
  assert not killed_at or f'resumed from step {killed_at}' in out
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    logged = [json.loads(line)['step'] for line in f]
  assert logged == list(range(1, steps + 1))
  scalars = _tensorboard_scalars(os.path.join(workdir, 'tensorboard'))
  assert sorted(s for s, tag in scalars if tag == 'loss') == list(range(1, steps + 1))
  assert all(len(values) == 1 for values in scalars.values())
  assert not os.path.exists(os.path.join(workdir, 'lock'))
