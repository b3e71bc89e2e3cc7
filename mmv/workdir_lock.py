"""A lock file in the workdir, so that two runs never train into the same one.

Two runs in one workdir would interleave metrics.jsonl and overwrite each other's checkpoints.
The lock is `workdir/lock`, created with O_CREAT | O_EXCL (atomic on local disks, NFS, Lustre
and gcsfuse, which has no hard links) and holding its owner's pid, host and a unique token,
written in one write and synced. It is removed when the run ends. While held, a daemon thread
refreshes the file's modification time every `stale_after / 10` seconds: its heartbeat.

A run killed without cleaning up (SIGKILL, a lost machine) leaves the lock behind. It is stale,
and taken over, when
- its heartbeat is older than `stale_after` seconds (any host: a run relaunched elsewhere,
  e.g. by SLURM's --requeue, takes over after at most that long), or
- it is from this host and its process is gone, or its pid is this process's own (a previous
  life of a container whose trainer is PID 1), and its heartbeat has missed 3 beats: the run
  waits for that (at most 3 beats, 90 s by default), since a container sharing the host's name
  (host networking) has a pid namespace of its own, where a live run's pid may look dead or be
  ours; a heartbeat that goes on meanwhile refuses the workdir.
A file being written (unreadable yet) counts as young, not stale. Of several runs taking over
one stale lock at once, the one that creates `lock.takeover` (O_EXCL) removes it, after reading
it again; the others are refused (a marker older than `stale_after`, left by a run killed while
taking over, is removed). The hosts' clocks must agree to well within `stale_after`.

With several processes, process 0 takes the lock for all and broadcasts the outcome: every
process raises the same one-line error, rather than waiting for the coordinator's timeout.
"""

import json
import os
import socket
import threading
import time
import uuid

import jax
from jax.experimental import multihost_utils
import numpy as np

FILENAME = 'lock'
STALE_AFTER_SECONDS = 300.0
# The longest error that process 0 sends the other processes.
_MESSAGE_BYTES = 4096
# Beats a same-host lock of a dead pid (or of ours) must have missed to be taken over.
_SILENT_BEATS = 3
# The locks this process holds (paths): the same pid in a lock is only a previous life if not.
_HELD = set()


class WorkdirLockedError(RuntimeError):
  """Another live run holds the workdir."""


def _alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Alive, another user's.
    return True
  return True


def _read(path):
  """(raw bytes, owner dict or None if unreadable, modification time); None if gone."""
  try:
    with open(path, 'rb') as f:
      raw = f.read()
      mtime = os.fstat(f.fileno()).st_mtime
  except FileNotFoundError:
    return None
  try:
    owner = json.loads(raw)
    owner = {'pid': int(owner['pid']), 'host': str(owner['host']),
             'since': float(owner['since']), 'token': owner.get('token')}
  except (ValueError, KeyError, TypeError, AttributeError):
    owner = None  # Being written, or damaged.
  return raw, owner, mtime


class WorkdirLock:
  """Holds `workdir/lock` while in use as a context manager (process 0 for all processes)."""

  def __init__(self, workdir, stale_after=STALE_AFTER_SECONDS, option='--workdir'):
    """`option`: the command-line flag naming the directory, which the errors suggest
    changing (an index's lock: '--output')."""
    if not stale_after > 0:
      raise ValueError(f'lock_stale_after={stale_after}: give a number of seconds > 0')
    self.path = os.path.join(os.path.abspath(workdir), FILENAME)
    self.stale_after = stale_after
    self.option = option
    self._fd, self._token, self._beating = None, None, None
    self._stop = threading.Event()

  def __enter__(self):
    error = None
    if jax.process_index() == 0:
      try:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._acquire()
      except Exception as e:  # pylint: disable=broad-except
        error = e  # Told to the other processes first.
    if jax.process_count() > 1:
      message = _broadcast_from_0(' '.join(str(error).split()) if error else '')
      if message and error is None:
        raise WorkdirLockedError(message)
    if error is not None:
      raise error
    return self

  def _acquire(self):
    host, token = socket.gethostname(), uuid.uuid4().hex
    for _ in range(4):  # Again after taking over a stale lock (or a stale marker).
      try:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
      except FileExistsError:
        found = _read(self.path)
        if found is not None:
          _, owner, mtime = found
          wait = self._check_stale(owner, time.time() - mtime, host)
          if wait > 0:
            found = self._silent_for(wait, found, owner)
          if found is not None:
            self._take_over(found)
        continue
      try:
        os.write(fd, json.dumps({'pid': os.getpid(), 'host': host, 'since': time.time(),
                                 'token': token}).encode())
        os.fsync(fd)
      except OSError:  # E.g. a full disk: no empty lock left behind.
        os.close(fd)
        os.remove(self.path)
        raise
      self._fd, self._token = fd, token
      _HELD.add(self.path)
      self._beating = threading.Thread(target=self._heartbeat, daemon=True, name='workdir-lock')
      self._beating.start()
      return
    raise WorkdirLockedError(f'could not take {self.path}: other runs are taking it at the '
                             'same time')

  def _check_stale(self, owner, age, host):
    """Raises WorkdirLockedError unless the lock of `owner` (None: unreadable) is stale;
    returns the seconds its heartbeat must yet stay still before it is taken over (0: now)."""
    workdir = os.path.dirname(self.path)
    if age > self.stale_after:
      return 0.0
    # A same-host lock of a dead pid, or of ours, is stale only once it has missed some beats:
    # containers sharing the host's name (host networking) have pid namespaces of their own,
    # where a live run's pid may look dead, or be ours.
    silent = max(0.0, _SILENT_BEATS * self.stale_after / 10 - age)
    if owner is None:
      raise WorkdirLockedError(
          f'{self.path} is being written by another run, or is damaged ({age:.0f} s old): '
          f'try again; it is taken over once {self.stale_after:.0f} s old')
    if owner['host'] == host and owner['pid'] == os.getpid():
      if self.path not in _HELD:
        return silent  # Ours, from a previous life (a container's PID 1).
      raise WorkdirLockedError(f'{workdir} is in use by another run in this process: use '
                               'another workdir')
    if owner['host'] == host and not _alive(owner['pid']):
      return silent
    since = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(owner['since']))
    raise WorkdirLockedError(
        f'{workdir} is in use by pid {owner["pid"]} on host {owner["host"]} (since {since}, '
        f'heartbeat {age:.0f} s ago); wait for that run to end or use another {self.option} (if '
        f'that run is gone, its lock is taken over once its heartbeat is '
        f'{self.stale_after:.0f} s old)')

  def _silent_for(self, seconds, found, owner):
    """`found` again after waiting `seconds`, if its heartbeat stayed still meanwhile (None if
    the lock changed or went: look again); WorkdirLockedError if it beat: its run is alive, in
    another pid namespace under this host's name."""
    print(f'{self.path}: pid {owner["pid"]} on this host is gone; taking its lock over once '
          f'its heartbeat has been still for {_SILENT_BEATS} beats ({seconds:.0f} s more)',
          flush=True)
    time.sleep(seconds)
    again = _read(self.path)
    if again is None or again[:2] != found[:2]:
      return None
    if again[2] != found[2]:
      raise WorkdirLockedError(
          f'{os.path.dirname(self.path)} is in use by pid {owner["pid"]} on host '
          f'{owner["host"]}, alive in another pid namespace (a container sharing this host\'s '
          f'name): its heartbeat goes on; wait for that run to end or use another {self.option}')
    return found

  def _take_over(self, stale):
    """Removes the lock file if it is still `stale` (as `_read` gave it): of several runs
    taking it over at once, the one that creates the take-over marker does, the others are
    refused."""
    marker = self.path + '.takeover'
    try:
      fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
      if _age(marker) > self.stale_after:  # Left by a run killed while taking over.
        _remove(marker)
        return
      raise WorkdirLockedError(
          f'another run is taking over the stale lock {self.path} right now (if none is, its '
          f'marker {marker} is removed once {self.stale_after:.0f} s old)') from None
    try:
      # Not a lock taken since it was read, nor one whose run proved alive by a heartbeat.
      if _read(self.path) == stale:
        _remove(self.path)
    finally:
      os.close(fd)
      os.remove(marker)

  def _heartbeat(self):
    while not self._stop.wait(self.stale_after / 10):
      try:
        os.utime(self._fd)  # The file created, even if another run took its name over.
      except OSError:
        pass  # A passing failure of a network file system: the next beat may succeed.

  def __exit__(self, *exc):
    if self._fd is None:
      return
    self._stop.set()
    self._beating.join()
    os.close(self._fd)
    _HELD.discard(self.path)
    found = _read(self.path)
    # Not removing a lock another run took over (after our heartbeat stalled for too long).
    if found is not None and found[1] is not None and found[1]['token'] == self._token:
      os.remove(self.path)
    self._fd = None


def _age(path):
  """Seconds since `path` was last modified (0 if it is gone)."""
  try:
    return time.time() - os.stat(path).st_mtime
  except FileNotFoundError:
    return 0.0


def _remove(path):
  try:
    os.remove(path)
  except FileNotFoundError:
    pass


def _broadcast_from_0(message):
  """Process 0's `message` (text), on every process: one collective."""
  data = np.zeros(_MESSAGE_BYTES, np.uint8)
  raw = message.encode()[:_MESSAGE_BYTES]
  data[:len(raw)] = np.frombuffer(raw, np.uint8)
  received = np.asarray(multihost_utils.broadcast_one_to_all(data))
  return bytes(received).rstrip(b'\0').decode(errors='replace')
