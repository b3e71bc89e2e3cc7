"""A lock file in the workdir, so that two runs never train into the same one.

Two runs in one workdir would interleave metrics.jsonl and overwrite each other's checkpoints.
The lock is a file created atomically (a hard link fails if it exists) holding the owner's pid and host; it is removed
when the run ends. A run killed without cleaning up (SIGKILL, a crash of the machine) leaves it
behind: a lock of a process no longer alive on this host is stale and taken over. A lock from
another host cannot be checked from here: the error says which file to delete if that run is
gone. With several processes, process 0 holds it for all.
"""

import json
import os
import socket
import time

import jax

FILENAME = 'lock'


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


class WorkdirLock:
  """Holds `workdir/lock` while in use as a context manager (process 0 only)."""

  def __init__(self, workdir):
    self.path = os.path.join(workdir, FILENAME)
    self._held = False

  def __enter__(self):
    if jax.process_index() == 0:
      os.makedirs(os.path.dirname(self.path), exist_ok=True)
      self._acquire()
    return self

  def _acquire(self):
    owner = {'pid': os.getpid(), 'host': socket.gethostname(), 'since': time.time()}
    # Written whole, then linked into place: whoever sees the lock file sees its owner.
    staged = f'{self.path}.{owner["host"]}.{owner["pid"]}'
    with open(staged, 'w') as f:
      json.dump(owner, f)
    try:
      for _ in range(2):  # Once more after removing a stale lock.
        try:
          os.link(staged, self.path)
          self._held = True
          return
        except FileExistsError:
          pass
        holder = self._holder()
        if holder is not None and not (holder['host'] == owner['host'] and
                                       not _alive(holder['pid'])):
          since = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(holder['since']))
          raise WorkdirLockedError(
              f'{os.path.dirname(self.path)} is in use by pid {holder["pid"]} on host '
              f'{holder["host"]} (since {since}); wait for that run to end or use another '
              f'--workdir (if that run is gone, delete {self.path})')
        # Stale: its owner is dead (or the file unreadable). Of several runs taking it over,
        # only one links the new file.
        try:
          os.remove(self.path)
        except FileNotFoundError:
          pass
      raise WorkdirLockedError(f'could not take {self.path}: another run took it over')
    finally:
      os.remove(staged)

  def _holder(self):
    try:
      with open(self.path) as f:
        holder = json.load(f)
      return {'pid': int(holder['pid']), 'host': str(holder['host']),
              'since': float(holder['since'])}
    except (OSError, ValueError, KeyError, TypeError):
      return None

  def __exit__(self, *exc):
    if self._held:
      os.remove(self.path)
      self._held = False
