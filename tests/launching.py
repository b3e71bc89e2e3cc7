"""Runs launch.py (or another script taking its flags) in subprocesses on fake CPU devices."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The `config` fixture's sizes, as flags.
SMALL = ['--config.model.width=8', '--config.model.word_embedding_dim=16',
         '--config.model.text_hidden=32', '--config.model.va_dim=32', '--config.model.vat_dim=16',
         '--config.train.batch_size=16', '--config.eval.batch_size=16',
         '--config.eval.synthetic.c=(1.0,)', '--config.eval.synthetic.train_passes=2',
         '--config.eval.synthetic.test_clips=2', '--config.eval.synthetic.retrieval_clips=2',
         '--config.optim.warmup_steps=2']


def train_args(workdir, data_dir, *flags, script='launch.py'):
  return [script, '--config', 'configs/tiny.py', f'--workdir={workdir}',
          f'--config.data.data_dir={data_dir}', '--config.train.log_every=1', *SMALL, *flags]


class Process:
  """A subprocess whose stdout is read line by line; stderr goes to a file for failures."""

  def __init__(self, args, devices):
    # The test process's XLA flags (see conftest.py) with another number of devices.
    xla_flags = [f for f in os.environ.get('XLA_FLAGS', '').split()
                 if not f.startswith('--xla_force_host_platform_device_count')]
    xla_flags.append(f'--xla_force_host_platform_device_count={devices}')
    env = dict(os.environ, XLA_FLAGS=' '.join(xla_flags), PYTHONPATH=ROOT)
    self._stderr = tempfile.TemporaryFile(mode='w+')
    self.popen = subprocess.Popen([sys.executable, '-u'] + args, cwd=ROOT, env=env,
                                  stdout=subprocess.PIPE, stderr=self._stderr, text=True)
    self.lines = []

  def wait_for(self, text):
    """Reads stdout until a line contains `text`; fails if the process ends first."""
    for line in self.popen.stdout:
      self.lines.append(line)
      if text in line:
        return
    raise AssertionError(f'process ended before printing {text!r}:\n{self.output()}')

  def finish(self, timeout=600):
    """Waits for the end; returns stdout. Fails with the stderr tail on a non-zero exit."""
    out, _ = self.popen.communicate(timeout=timeout)
    self.lines.append(out)
    assert self.popen.returncode == 0, self.output()
    return ''.join(self.lines)

  def output(self):
    self._stderr.seek(0)
    return ''.join(self.lines) + '\n--- stderr ---\n' + self._stderr.read()[-4000:]


def run(args, devices):
  return Process(args, devices).finish()


def free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def logged_losses(workdir):
  """{step: [loss of each record of that step]} from metrics.jsonl (a re-run step repeats)."""
  losses = {}
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    for record in map(json.loads, f):
      losses.setdefault(record['step'], []).append(record['loss'])
  return losses


def start_processes(workdir, data_dir, *flags, count=2, devices=2, script='launch.py'):
  """`count` processes of one run of `script` (gloo on 127.0.0.1), `devices` devices each."""
  port = free_port()
  return [Process(train_args(workdir, data_dir, *flags, f'--coordinator_address=127.0.0.1:{port}',
                             f'--num_processes={count}', f'--process_id={i}', script=script),
                  devices) for i in range(count)]


def ended(process, timeout):
  """(exit status, stdout, stderr lines without the logging of TF and XLA) once `process` ends;
  fails, killing it, if it runs for `timeout` more seconds."""
  try:
    out, _ = process.popen.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    process.popen.kill()
    process.popen.communicate()
    raise AssertionError(f'still running after {timeout} s:\n{process.output()}') from None
  process.lines.append(out)
  process._stderr.seek(0)  # pylint: disable=protected-access
  stderr = [l for l in process._stderr.read().splitlines()  # pylint: disable=protected-access
            if not l.startswith(('WARNING: All log messages', 'I0000', 'W0000', 'E0000'))]
  return process.popen.returncode, ''.join(process.lines), stderr


def finish_together(processes, timeout):
  """Waits for the processes of one multi-process run; returns their stdouts.

  A process that fails, or the timeout, ends the others at once (SIGKILL) and fails with every
  process's output: processes that disagree hang in a collective rather than exit.
  """
  readers = [threading.Thread(target=lambda p=p: p.lines.extend(p.popen.stdout), daemon=True)
             for p in processes]
  for reader in readers:
    reader.start()
  deadline = time.monotonic() + timeout
  while any(p.popen.poll() is None for p in processes):
    if time.monotonic() > deadline or any(p.popen.returncode for p in processes):
      for p in processes:
        if p.popen.poll() is None:
          p.popen.kill()
      break
    time.sleep(0.2)
  for p, reader in zip(processes, readers):
    p.popen.wait()
    reader.join()
  codes = [p.popen.returncode for p in processes]
  if codes != [0] * len(processes):
    outputs = '\n'.join(f'--- process {i} ---\n{p.output()}' for i, p in enumerate(processes))
    raise AssertionError(f'exit statuses {codes} (-9: killed after another failed or after '
                         f'{timeout} s):\n{outputs}')
  return [''.join(p.lines) for p in processes]
