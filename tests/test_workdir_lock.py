"""The workdir lock: without hard links (gcsfuse), its owner's previous life, a heartbeat that a
run on another host takes over from once stale, two runs taking over at once; with two
processes, a refusal both report at once (launch.py's one-line error for a busy workdir). (A
Ctrl-C to one of two processes, stopping both with a checkpoint, and a second one, aborting that
process at once: test_multihost.py; a second launch refused while a live run holds the lock:
test_preemption.py.)"""

import errno
import json
import os
import socket
import subprocess
import threading
import time

import pytest

from mmv import workdir_lock
from tests import launching

# Launches processes, converts media or trains: not in `make test-fast`.
pytestmark = pytest.mark.slow


def _write_lock(workdir, pid, host, age=0.0):
  """A lock file of `pid` on `host` whose heartbeat (modification time) is `age` seconds old."""
  path = os.path.join(workdir, 'lock')
  with open(path, 'w') as f:
    json.dump({'pid': pid, 'host': host, 'since': time.time() - age}, f)
  os.utime(path, (time.time() - age,) * 2)
  return path


def _owner(workdir):
  with open(os.path.join(workdir, 'lock')) as f:
    return json.load(f)


def _dead_pid():
  process = subprocess.Popen(['true'])
  process.wait()
  return process.pid


@pytest.fixture
def no_hard_links(monkeypatch):
  """gcsfuse: link(2) fails with ENOSYS."""

  def link(*args, **kwargs):
    raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))

  monkeypatch.setattr(os, 'link', link)


def test_works_without_hard_links(tmp_path, no_hard_links):
  workdir = str(tmp_path / 'run')
  with workdir_lock.WorkdirLock(workdir):
    assert _owner(workdir)['pid'] == os.getpid()
    with pytest.raises(workdir_lock.WorkdirLockedError,
                       match='in use by another run in this process'):
      with workdir_lock.WorkdirLock(workdir):
        pass
  assert os.listdir(workdir) == []  # Nothing left behind.


def test_own_pid_from_a_previous_life_and_dead_pids_are_taken_over(tmp_path, capsys):
  """A container's trainer is PID 1 in every life: the lock of its previous one is stale, once
  its heartbeat has missed 3 beats (0.3 s here), which the new run waits for."""
  for pid in (os.getpid(), _dead_pid()):
    _write_lock(str(tmp_path), pid, socket.gethostname())
    start = time.monotonic()
    with workdir_lock.WorkdirLock(str(tmp_path), stale_after=1.0):
      assert _owner(str(tmp_path))['pid'] == os.getpid()
    assert 0.25 < time.monotonic() - start < 5
    assert not os.path.exists(tmp_path / 'lock')
    assert f'pid {pid} on this host is gone; taking its lock over once' in capsys.readouterr().out


def test_a_same_host_lock_whose_heartbeat_goes_on_is_refused_though_its_pid_looks_dead(
    tmp_path):
  """Containers sharing the host's name (host networking) have pid namespaces of their own: a
  live run's pid may look dead from here, or be ours. Its heartbeat tells it is alive."""
  for pid in (os.getpid(), _dead_pid()):
    path = _write_lock(str(tmp_path), pid, socket.gethostname())
    beating = threading.Event()

    def beat():
      while not beating.wait(0.05):
        os.utime(path)

    thread = threading.Thread(target=beat)
    thread.start()
    try:
      with pytest.raises(workdir_lock.WorkdirLockedError,
                         match=f'in use by pid {pid} on host .* in another pid namespace'):
        with workdir_lock.WorkdirLock(str(tmp_path), stale_after=1.0):
          pass
    finally:
      beating.set()
      thread.join()
    assert _owner(str(tmp_path))['pid'] == pid


def test_a_take_over_marker_left_by_a_killed_run_is_removed_once_stale(tmp_path):
  """A run killed between creating `lock.takeover` and removing it: the marker would refuse
  every later take-over."""
  _write_lock(str(tmp_path), 1234, 'another-host', age=3600)
  marker = str(tmp_path / 'lock.takeover')
  open(marker, 'w').close()
  with pytest.raises(workdir_lock.WorkdirLockedError, match='taking over the stale lock'):
    with workdir_lock.WorkdirLock(str(tmp_path)):  # A marker this young: a run at it now.
      pass
  os.utime(marker, (time.time() - 301,) * 2)
  with workdir_lock.WorkdirLock(str(tmp_path)):
    assert _owner(str(tmp_path))['pid'] == os.getpid()
  assert os.listdir(tmp_path) == []


def test_another_hosts_lock_is_taken_over_once_its_heartbeat_is_stale(tmp_path):
  """SLURM --requeue onto another node: taken over once the heartbeat is older than the
  threshold (default 300 s), refused before."""
  _write_lock(str(tmp_path), 1234, 'another-host', age=301)
  with workdir_lock.WorkdirLock(str(tmp_path)):
    assert _owner(str(tmp_path))['host'] == socket.gethostname()
  _write_lock(str(tmp_path), 1234, 'another-host', age=270)
  with pytest.raises(workdir_lock.WorkdirLockedError,
                     match=r'in use by pid 1234 on host another-host .*heartbeat 270 s ago.*'
                     r'taken over once its heartbeat is 300 s old'):
    with workdir_lock.WorkdirLock(str(tmp_path)):
      pass


def test_the_holder_refreshes_its_heartbeat(tmp_path):
  path = str(tmp_path / 'lock')
  with workdir_lock.WorkdirLock(str(tmp_path), stale_after=1.0):  # A beat every 0.1 s.
    os.utime(path, (time.time() - 3600,) * 2)
    time.sleep(0.5)
    assert time.time() - os.stat(path).st_mtime < 0.5
    # A run elsewhere would not take it over: it is refused.
    with pytest.raises(workdir_lock.WorkdirLockedError):
      with workdir_lock.WorkdirLock(str(tmp_path), stale_after=1.0):
        pass


def test_a_lock_being_written_is_young_not_stale(tmp_path):
  """An empty file: a run between creating its lock and writing it, or one that died there."""
  path = str(tmp_path / 'lock')
  open(path, 'w').close()
  with pytest.raises(workdir_lock.WorkdirLockedError, match='being written by another run'):
    with workdir_lock.WorkdirLock(str(tmp_path)):
      pass
  os.utime(path, (time.time() - 301,) * 2)
  with workdir_lock.WorkdirLock(str(tmp_path)):
    assert _owner(str(tmp_path))['pid'] == os.getpid()


def test_the_end_of_a_run_leaves_the_lock_of_a_run_that_took_it_over(tmp_path):
  """A holder stalled past the threshold, another host took over: the first run's end must not
  remove the second's lock."""
  with workdir_lock.WorkdirLock(str(tmp_path)):
    os.remove(tmp_path / 'lock')
    _write_lock(str(tmp_path), 1234, 'another-host')
  assert _owner(str(tmp_path))['host'] == 'another-host'


def test_of_two_runs_taking_over_a_stale_lock_at_once_one_gets_it(tmp_path, monkeypatch):
  """Run A reads the stale lock; before A acts on it, run B (another live process on this host)
  takes it over. A must not remove B's fresh lock: A is refused and B keeps it."""
  workdir = str(tmp_path)
  _write_lock(workdir, _dead_pid(), socket.gethostname(), age=3600)
  run_b = workdir_lock.WorkdirLock(workdir)
  real_open = open

  def open_then_b_takes_over(path, *args, **kwargs):
    f = real_open(path, *args, **kwargs)
    if path.endswith('lock') and 'r' in (args[0] if args else kwargs.get('mode', 'r')) and \
        not monkeypatch.b_done:
      monkeypatch.b_done = True
      with monkeypatch.context() as m:  # A holds the stale file open: it reads the stale owner.
        m.setattr(os, 'getpid', os.getppid)
        run_b.__enter__()
    return f

  monkeypatch.b_done = False
  monkeypatch.setattr(workdir_lock, 'open', open_then_b_takes_over, raising=False)
  with pytest.raises(workdir_lock.WorkdirLockedError, match=f'in use by pid {os.getppid()} '):
    with workdir_lock.WorkdirLock(workdir):
      pass
  assert monkeypatch.b_done and _owner(workdir)['pid'] == os.getppid()
  run_b.__exit__(None, None, None)
  assert not os.path.exists(tmp_path / 'lock')


def test_two_processes_report_a_busy_workdir_at_once(data_dir, tmp_path):
  """A live run on another host holds the workdir: both processes end promptly with the same
  one-line error (before, process 1 went on until the coordinator's timeout)."""
  workdir = str(tmp_path)
  _write_lock(workdir, 4321, 'another-host')
  processes = launching.start_processes(workdir, data_dir, '--config.train.steps=4')
  for process in processes:
    status, _, stderr = launching.ended(process, timeout=120)
    assert status == 1 and len(stderr) == 1, stderr
    assert stderr[0].startswith(f'error: {workdir} is in use by pid 4321 on host another-host '),\
        stderr
  assert _owner(workdir)['pid'] == 4321
