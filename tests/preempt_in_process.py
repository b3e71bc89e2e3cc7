"""A SIGTERM at a chosen step of an in-process `mmv.train.train` (or of what calls it: fine-tuning,
XDC's rounds): the signal the scheduler would send, raised by the step function itself, so the
run stops at a known step boundary through the same handler, checkpoint and return as
launch.py's (tests/test_preemption.py and tests/test_launch.py cover the processes' side: the
exit status, the signal from outside, several processes agreeing on the step)."""

import os
import signal

import jax

from mmv import preemption
from mmv import train


def sigterm_during_step(monkeypatch, step):
  """From now on, the `step`-th train step run in this process (counting from 1 over all
  `train.train` calls that follow) gets a SIGTERM while it runs; returns the list of the steps
  run since (one None each)."""
  compile_train_step = train.compile_train_step
  calls = []

  def compile_fn(*args):
    step_fn, flops = compile_train_step(*args)

    def stepped(state, batch):
      calls.append(None)
      if len(calls) == step:
        handler = signal.getsignal(signal.SIGTERM)
        # The watcher's handler, else the signal would end pytest (a run outside the main
        # thread sets none; see mmv.preemption).
        assert isinstance(getattr(handler, '__self__', None), preemption.PreemptionWatcher), (
            handler)
        signal.raise_signal(signal.SIGTERM)
      return step_fn(state, batch)

    return stepped, flops

  monkeypatch.setattr(train, 'compile_train_step', compile_fn)
  return calls


def compile_once(monkeypatch):
  """From now on, `train.train` in this process compiles its train step once per config, mesh
  and batch shapes, and later runs (a stopped run, its resumption) take that step function: the
  same program, without tracing and loading it again (seconds for the ResNet-50s). What a
  resumed run restores (parameters, optimiser and BatchNorm state, data position) still goes
  through its checkpoint."""
  compile_train_step = train.compile_train_step
  compiled = {}

  def compile_fn(config, model, tx, mesh, abstract, batch):
    key = (config.to_json_best_effort(), repr(mesh),
           repr(jax.tree.map(lambda x: (x.shape, x.dtype, x.sharding), batch)))
    if key not in compiled:
      compiled[key] = compile_train_step(config, model, tx, mesh, abstract, batch)
    return compiled[key]

  monkeypatch.setattr(train, 'compile_train_step', compile_fn)


def sigterm_after_batches(num_batches, released):
  """`train.input_batches` that sends this process a SIGTERM once `num_batches` were taken and
  then yields nothing more until `released` (a threading.Event) is set (60 s at most: then it
  fails the run): the run stops at step `num_batches` while it waits for input."""

  def input_fn(config, mesh, data_state):
    batches, state_after = train.input_batches(config, mesh, data_state)

    def blocked():
      for _ in range(num_batches):
        yield next(batches)
      os.kill(os.getpid(), signal.SIGTERM)
      if not released.wait(60):
        raise RuntimeError('the run went on waiting for input after a SIGTERM')

    return blocked(), state_after

  return input_fn
