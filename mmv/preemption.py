"""Preemption: stop at a step boundary that every process agrees on, after a SIGTERM or Ctrl-C.

Schedulers (Cloud TPU maintenance, SLURM, Kubernetes) send SIGTERM some time before they kill
a job. With several processes, jax.distributed's preemption service catches the signal on
whichever host receives it and agrees with the others on a step (the largest step any process
has reached, plus one); `multihost_utils.reached_preemption_sync_point` is True at that step on
all of them. A single process has no such service, so a Python handler records the signal; it
handles Ctrl-C (SIGINT) the same way, and a second Ctrl-C raises KeyboardInterrupt at once.

A single process also notices the signal while it waits for input (`interruptible`): a data
pipeline that yields nothing would otherwise hold the run until SIGKILL.
"""

import queue
import signal
import threading

import jax
from jax.experimental import multihost_utils

# How often a wait for input looks at the signal flag.
_POLL_SECONDS = 0.1


class StopRequested(Exception):
  """A signal arrived while waiting for input: no batch for the next step."""


class PreemptionWatcher:
  """`should_stop(step)` after each step; use as a context manager to restore the handlers."""

  def __init__(self):
    self._distributed = jax.distributed.is_initialized()
    self.signal_name = None  # 'SIGTERM' or 'SIGINT' once one was received.
    self._previous = {}
    # Signal handlers can only be set from the main thread (a notebook's cell, not a worker).
    if not self._distributed and threading.current_thread() is threading.main_thread():
      for signum in (signal.SIGTERM, signal.SIGINT):
        self._previous[signum] = signal.signal(signum, self._on_signal)

  def _on_signal(self, signum, frame):
    del frame
    if signum == signal.SIGINT:
      # The next Ctrl-C does what it did before (KeyboardInterrupt): aborts without waiting.
      signal.signal(signal.SIGINT, self._previous[signal.SIGINT])
      print('Ctrl-C: stopping at the next step boundary with a checkpoint; press Ctrl-C '
            'again to abort without one', flush=True)
    self.signal_name = self.signal_name or signal.Signals(signum).name

  @property
  def received(self):
    return self.signal_name is not None

  def should_stop(self, step):
    """True once a signal was received: the same step on every process. Call every step."""
    if self._distributed:
      return multihost_utils.reached_preemption_sync_point(step)
    return self.received

  def interruptible(self, iterator):
    """`iterator`, whose `next` raises `StopRequested` if a signal arrives while it waits.

    Several processes agree on their stop step through the preemption service, after a step:
    there a wait for input is not interrupted.
    """
    return _Interruptible(iterator, lambda: not self._distributed and self.received)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)


class _Interruptible:
  """Advances an iterator in a daemon thread, one item per request, so that the main thread
  waits in a loop that can look at a flag (and a blocked iterator cannot keep the process
  alive at exit). One item per request: the iterator runs no further ahead than before."""

  def __init__(self, iterator, stop_requested):
    self.iterator, self._stop_requested = iterator, stop_requested
    self._requests, self._results = queue.Queue(), queue.Queue()
    self._pending = False
    threading.Thread(target=self._work, daemon=True, name='input').start()

  def _work(self):
    while self._requests.get():
      try:
        self._results.put((next(self.iterator), None))
      except BaseException as e:  # pylint: disable=broad-except
        self._results.put((None, e))  # Raised in the main thread, StopIteration included.

  def close(self):
    """Ends the thread once its current `next` (if any) returns."""
    self._requests.put(False)

  def __iter__(self):
    return self

  def __next__(self):
    if not self._pending:  # A wait interrupted before keeps its request.
      self._requests.put(True)
      self._pending = True
    while True:
      try:
        item, error = self._results.get(timeout=_POLL_SECONDS)
        break
      except queue.Empty:
        if self._stop_requested():
          raise StopRequested() from None
    self._pending = False
    if error is not None:
      raise error
    return item
