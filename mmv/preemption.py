"""Preemption: stop at a step boundary that every process agrees on, after a SIGTERM or Ctrl-C.

Schedulers (Cloud TPU maintenance, SLURM, Kubernetes) send SIGTERM some time before they kill
a job. With several processes, jax.distributed's preemption service catches the signal on
whichever host receives it and agrees with the others on a step (the largest step any process
has reached, plus one); `multihost_utils.reached_preemption_sync_point` is True at that step on
all of them. The service only listens for SIGTERM: a Ctrl-C (SIGINT) on any process sends that
process a SIGTERM, so it stops the run the same way, and at that step the processes agree
(one all-gather) on which signal it was. A single process has no such service: a Python
handler records either signal. A second Ctrl-C aborts at once: KeyboardInterrupt with one
process; with several, that process exits on the spot (`_exit_now`).

A single process also notices the signal while it waits for input (`interruptible`): a data
pipeline that yields nothing would otherwise hold the run until SIGKILL.
"""

import os
import queue
import signal
import sys
import threading

import jax
from jax.experimental import multihost_utils
import numpy as np

# How often a wait for input looks at the signal flag.
_POLL_SECONDS = 0.1


class StopRequested(Exception):
  """A signal arrived while waiting for input: no batch for the next step."""


class PreemptionWatcher:
  """`should_stop(step)` after each step; use as a context manager to restore the handlers."""

  def __init__(self):
    self._distributed = jax.distributed.is_initialized()
    # 'SIGTERM' or 'SIGINT': the signal received (one process), or the one that stopped the
    # run (several: SIGINT if any process got a Ctrl-C), once `should_stop` said so.
    self.signal_name = None
    self._interrupted = False  # Ctrl-C on this process (several processes).
    self._previous = {}
    # Signal handlers can only be set from the main thread (a notebook's cell, not a worker).
    if threading.current_thread() is threading.main_thread():
      # With several processes, SIGTERM is the preemption service's.
      for signum in (signal.SIGINT,) if self._distributed else (signal.SIGINT, signal.SIGTERM):
        self._previous[signum] = signal.signal(signum, self._on_signal)

  def _on_signal(self, signum, frame):
    del frame
    if signum == signal.SIGINT:
      # The next Ctrl-C aborts without waiting: as before (KeyboardInterrupt) with one process,
      # also where SIGINT was ignored before (a job started in the background inherits that,
      # and Python then sets no handler of its own): restoring SIG_IGN lost the second one.
      previous = self._previous[signal.SIGINT]
      signal.signal(signal.SIGINT, _exit_now if self._distributed else
                    previous if callable(previous) else signal.default_int_handler)
      print('Ctrl-C: stopping at the next step boundary with a checkpoint; press Ctrl-C '
            'again to abort without one', flush=True)
      if self._distributed:
        self._interrupted = True
        os.kill(os.getpid(), signal.SIGTERM)  # To the preemption service's handler.
        return
    self.signal_name = self.signal_name or signal.Signals(signum).name

  @property
  def received(self):
    return self.signal_name is not None

  def should_stop(self, step):
    """True once a signal was received: the same step on every process. Call every step."""
    if not self._distributed:
      return self.received
    if not multihost_utils.reached_preemption_sync_point(step):
      return False
    interrupted = multihost_utils.process_allgather(np.int32(self._interrupted))
    self.signal_name = 'SIGINT' if np.any(interrupted) else 'SIGTERM'
    return True

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


def _exit_now(signum, frame):
  """A second Ctrl-C with several processes: exits at once. Unwinding would wait for the other
  processes (a pending save, jax.distributed's shutdown barrier) that go on with the run until
  they find this one gone; they then end with an error."""
  del signum, frame
  print('aborted by Ctrl-C: nothing saved since the last checkpoint', file=sys.stderr,
        flush=True)
  os._exit(130)  # pylint: disable=protected-access


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
