"""Preemption: stop at a step boundary that every process agrees on, after a SIGTERM.

Schedulers (Cloud TPU maintenance, SLURM, Kubernetes) send SIGTERM some time before they kill
a job. With several processes, jax.distributed's preemption service catches the signal on
whichever host receives it and agrees with the others on a step (the largest step any process
has reached, plus one); `multihost_utils.reached_preemption_sync_point` is True at that step on
all of them. A single process has no such service, so a Python handler records the signal.
"""

import signal
import threading

import jax
from jax.experimental import multihost_utils


class PreemptionWatcher:
  """`should_stop(step)` after each step; use as a context manager to restore the handler."""

  def __init__(self):
    self._distributed = jax.distributed.is_initialized()
    self._received = False
    self._previous = None
    # Signal handlers can only be set from the main thread (a notebook's cell, not a worker).
    if not self._distributed and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

  def _on_sigterm(self, signum, frame):
    del signum, frame
    self._received = True

  def should_stop(self, step):
    """True once a SIGTERM was received: the same step on every process. Call every step."""
    if self._distributed:
      return multihost_utils.reached_preemption_sync_point(step)
    return self._received

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
