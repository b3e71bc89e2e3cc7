"""Preemption (Ctrl-C, SIGTERM, SIGKILL) and exact resume through launch.py; a second launch into
a busy workdir; NaN losses stop the run or are skipped."""

import os
import signal
import threading
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tensorflow as tf

from mmv import checkpoint as ckpt_lib
from mmv import optim
from mmv import preemption
from mmv import sharding
from mmv import train
from mmv import train_step
from mmv import workdir_lock
from tests import launching
from tests import preempt_in_process

# Launches processes, converts media or trains: not in `make test-fast`.
pytestmark = pytest.mark.slow

DEVICES = 2


def _final_params(config, workdir, step):
  mesh = sharding.make_mesh()
  model = train_step.create_model(config)
  abstract = train_step.abstract_train_state(config, model, optim.make_optimizer(config.optim, 1),
                                        mesh)
  signature = ckpt_lib.variable_signature(
      {'params': abstract.params, 'batch_stats': abstract.batch_stats})
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), read_only=True)
  state, _ = checkpointer.restore(abstract, signature=signature, step=step)
  checkpointer.close()
  return jax.device_get(state.params)


def _latest_step(workdir):
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), read_only=True)
  step = checkpointer.latest_step()
  checkpointer.close()
  return step


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


def test_ctrl_c_sigterm_and_sigkill_resume_exactly(config, data_dir, tmp_path):
  """One run through launch.py, stopped in each way a user or a scheduler stops it, resumed
  each time by the same command:
  Ctrl-C → checkpoint, exit status 130, one line saying so (no traceback) → resume → SIGTERM
  → checkpoint and a clean exit → resume → a second launch into the busy workdir is refused
  (naming the live run's pid) → SIGKILL, which leaves a stale lock → resume from the last
  complete checkpoint, taking the lock over. Every step is logged once, in metrics.jsonl and
  TensorBoard, with the same loss as a run without stops, and the final parameters are
  bit-identical. (One run serves the checks of three former tests, here and in
  test_launch.py; the one-line CLI error for a busy workdir: test_workdir_lock.py.)"""
  steps = 12  # Room for three stops before the end, however late a signal comes.
  # Checkpoints only when stopped and at the end: the SIGKILL leaves the SIGTERM's the latest.
  args = lambda workdir: launching.train_args(
      workdir, data_dir, f'--config.train.steps={steps}', '--config.train.checkpoint_every=100')
  full, stopped = str(tmp_path / 'full'), str(tmp_path / 'stopped')
  launching.run(args(full), DEVICES)

  run = launching.Process(args(stopped), DEVICES)
  run.wait_for(f'step 2/{steps}')
  run.popen.send_signal(signal.SIGINT)
  status, out, _ = launching.ended(run, timeout=300)
  assert status == 130, run.output()
  interrupted_at = _latest_step(stopped)
  assert 2 <= interrupted_at < steps - 2, run.output()  # At a step boundary after the signal.
  assert (f'interrupted (Ctrl-C): saved the checkpoint of step {interrupted_at}; run the same '
          'command again to resume') in out.splitlines()
  assert f'interrupted at step {interrupted_at}; workdir {stopped}' in out
  assert 'Traceback' not in run.output()

  run = launching.Process(args(stopped), DEVICES)
  run.wait_for(f'resumed from step {interrupted_at}')
  run.wait_for(f'step {interrupted_at + 1}/{steps}')
  run.popen.send_signal(signal.SIGTERM)
  out = run.finish()  # Exit status 0.
  preempted_at = _latest_step(stopped)
  assert interrupted_at < preempted_at < steps, out
  assert f'preempted: saved the checkpoint of step {preempted_at}' in out
  assert f'preempted at step {preempted_at}' in out

  run = launching.Process(args(stopped), DEVICES)
  run.wait_for(f'resumed from step {preempted_at}')
  run.wait_for(f'step {preempted_at + 1}/{steps}')
  run.popen.send_signal(signal.SIGSTOP)  # Alive, holding the lock, not training.
  try:
    with pytest.raises(workdir_lock.WorkdirLockedError,
                       match=f'{stopped} is in use by pid {run.popen.pid} on host '):
      train.train(config, stopped)  # Refused before it compiles or writes anything.
  finally:
    run.popen.kill()  # Its lock stays behind, stale.
    run.popen.wait()
  assert os.path.exists(os.path.join(stopped, 'lock'))
  killed_at = _latest_step(stopped)
  assert killed_at == preempted_at
  assert max(launching.logged_losses(stopped)) > killed_at  # Steps to log again.

  # Same host, pid gone: taken over once its heartbeat has missed 3 beats (3 s here; 90 s with
  # the default threshold, which the run would wait for).
  out = launching.run(args(stopped) + ['--lock_stale_after=10'], DEVICES)
  assert f'resumed from step {killed_at}' in out
  assert not os.path.exists(os.path.join(stopped, 'lock'))
  expected = launching.logged_losses(full)
  got = launching.logged_losses(stopped)
  assert got == expected and sorted(got) == list(range(1, steps + 1))  # Once each, exactly.
  scalars = _tensorboard_scalars(os.path.join(stopped, 'tensorboard'))
  assert sorted(s for s, tag in scalars if tag == 'loss') == list(range(1, steps + 1))
  assert all(len(values) == 1 for values in scalars.values())
  chex.assert_trees_all_equal(_final_params(config, stopped, steps),
                              _final_params(config, full, steps))


def test_a_second_ctrl_c_raises_keyboard_interrupt_also_where_sigint_was_ignored():
  """A job started in the background inherits SIGINT ignored, and Python then sets no handler
  of its own. The watcher catches the first Ctrl-C anyway; the second must abort too
  (KeyboardInterrupt, which launch.py reports), not be ignored as the handler restored was.
  (Through launch.py, a second Ctrl-C: test_launch.py and test_workdir_lock.py.)"""
  previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
  try:
    with preemption.PreemptionWatcher() as watcher:
      os.kill(os.getpid(), signal.SIGINT)
      assert watcher.signal_name == 'SIGINT'
      with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100):  # The handler runs in this thread, between bytecodes.
          time.sleep(0.01)
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # Restored at the end.
  finally:
    signal.signal(signal.SIGINT, previous)


def _poisoned(step_to_poison):
  """`train.input_batches` with NaN video in the batch of one step (of a run from step 0)."""

  def input_fn(config, mesh, data_state):
    assert data_state is None
    batches, state_after = train.input_batches(config, mesh, data_state)
    poisoned = (dict(batch, video=batch['video'] * jnp.nan) if step == step_to_poison else batch
                for step, batch in enumerate(batches, 1))
    return poisoned, state_after

  return input_fn


@pytest.mark.parametrize('log_every, stopped_at', [(1, 3), (100, 4)])
def test_nan_loss_stops_and_keeps_the_last_checkpoint(config, tmp_path, log_every, stopped_at):
  """Metrics are fetched at log steps and before checkpoints: with sparse logging the run
  stops at the next checkpoint step (4), before saving it."""
  workdir = str(tmp_path / 'run')
  config.train.steps = 6
  config.train.log_every = log_every
  config.profile_steps = (2, 5)  # The run stops inside the window.
  with pytest.raises(train.NonFiniteLossError,
                     match=rf'step 3: .*not finite; training stopped at step {stopped_at}\b.*'
                     r'latest checkpoint \(step 2\) is intact'):
    train.train(config, workdir, input_fn=_poisoned(3))
  assert ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints')).all_steps() == [2]
  chex.assert_tree_all_finite(_final_params(config, workdir, 2))
  # The trace was stopped with the run: another can start.
  jax.profiler.start_trace(str(tmp_path / 'another_trace'))
  jax.profiler.stop_trace()


@pytest.mark.parametrize('blocked_after', [3, 2])
def test_sigterm_while_waiting_for_input_stops_the_run(config, tmp_path, capsys, blocked_after):
  """The input stalls after some steps: the SIGTERM stops the run at once, with a checkpoint
  of the last step unless it has one already (checkpoint_every=2): no new one then."""
  config.train.steps = 4  # The stalls come before its end.
  released = threading.Event()
  try:
    input_fn = preempt_in_process.sigterm_after_batches(blocked_after, released)
    summary = train.train(config, str(tmp_path), input_fn=input_fn)
  finally:
    released.set()
  assert summary['preempted'] == 'SIGTERM' and summary['step'] == blocked_after
  assert f'preempted: saved the checkpoint of step {blocked_after}' in capsys.readouterr().out
  expected = [2] + ([blocked_after] if blocked_after % 2 else [])
  assert ckpt_lib.Checkpointer(os.path.join(tmp_path, 'checkpoints')).all_steps() == expected


def _restore(config, workdir, step):
  mesh = sharding.make_mesh()
  model = train_step.create_model(config)
  abstract = train_step.abstract_train_state(config, model, train_step.create_optimizer(config), mesh)
  signature = ckpt_lib.variable_signature(
      {'params': abstract.params, 'batch_stats': abstract.batch_stats})
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), read_only=True)
  state, _ = checkpointer.restore(abstract, signature=signature, step=step)
  checkpointer.close()
  return jax.device_get(state)


def _only(tree, kind):
  found = [x for x in jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, kind))
           if isinstance(x, kind)]
  assert len(found) == 1, found
  return found[0]


def _learning_rate_used(before, after):
  """The learning rate of the Adam update from state `before` to `after`, solved from the
  parameters' change and Adam's formula (Kingma & Ba, with optax's defaults b1=0.9, b2=0.999,
  eps=1e-8) applied to the moments and count of `after`."""
  adam = _only(after.opt_state, optax.ScaleByAdamState)
  t = int(adam.count)
  rates = []
  for p0, p1, mu, nu in zip(*map(jax.tree.leaves, (before.params, after.params, adam.mu, adam.nu))):
    direction = (mu / (1 - 0.9**t)) / (np.sqrt(nu / (1 - 0.999**t)) + 1e-8)
    large = np.abs(direction) > 0.5  # Changes large enough for float32 parameters to resolve.
    rates.append((np.asarray(p0, np.float64) - p1)[large] / direction[large])
  rates = np.concatenate(rates)
  assert rates.size > 100
  return float(np.median(rates)), rates


def test_skipped_step_keeps_the_learning_rate_schedule_and_throughput_is_logged(config,
                                                                                tmp_path):
  """Step 2 is skipped: the updates of steps 3 and 4 use the schedule at 2 and 3 (the update
  from step s uses schedule(s), optax's convention), not at 1 and 2 as when optax's count
  lagged behind the skipped step. The records (every 2 steps) count the non-finite steps
  since the one before and give the throughput; the profile window is traced. (One run for
  the checks of two former tests.)"""
  config.train.nonfinite = 'skip'
  config.train.checkpoint_every = 1
  config.train.max_to_keep = 4
  config.train.log_every = 2
  config.profile_steps = (2, 3)
  workdir = str(tmp_path)
  summary = train.train(config, workdir, input_fn=_poisoned(2))
  assert summary['step'] == 4 and summary['skipped_steps'] == [2]
  assert [(s, m['nonfinite']) for s, m in summary['history']] == [(2, 1), (4, 0)]
  chex.assert_tree_all_finite(jax.device_get(summary['state'].params))
  logged = dict(summary['history'])
  assert np.isfinite(logged[4]['loss'])
  # Throughput from step 2 on (step 1 includes the start-up); no MFU without a known peak.
  for key in ('examples_per_sec', 'step_time_sec', 'input_wait_fraction', 'tflops_per_sec'):
    assert key in logged[2] and key in logged[4], key
  assert 0 <= logged[4]['input_wait_fraction'] <= 1 and 'mfu' not in logged[4]
  assert logged[4]['examples_per_sec'] == pytest.approx(16 / logged[4]['step_time_sec'])
  traces = [f for _, _, files in os.walk(tmp_path / 'profile') for f in files]
  assert any(f.endswith('.xplane.pb') for f in traces), traces
  states = {s: _restore(config, workdir, s) for s in range(1, 5)}

  for s, state in states.items():  # One clock.
    assert int(_only(state.opt_state, optax.ScaleByScheduleState).count) == s == state.step
  # The skipped step changed no parameter, BatchNorm statistic, nor Adam's moments or count.
  keep = lambda state: (state.params, state.batch_stats,
                        _only(state.opt_state, optax.ScaleByAdamState))
  chex.assert_trees_all_equal(keep(states[2]), keep(states[1]))
  assert int(_only(states[4].opt_state, optax.ScaleByAdamState).count) == 3

  # warmup_cosine_decay_schedule(0 → peak over 2 steps, cosine to 0 at step 4), at 2 and 3.
  peak, warmup, total = config.optim.learning_rate, config.optim.warmup_steps, config.train.steps
  assert (warmup, total) == (2, 4)
  schedule = lambda s: peak * 0.5 * (1 + np.cos(np.pi * (s - warmup) / (total - warmup)))
  for step in (3, 4):
    median, rates = _learning_rate_used(states[step - 1], states[step])
    assert median == pytest.approx(schedule(step - 1), rel=1e-3), step
    np.testing.assert_allclose(rates, median, rtol=2e-2)
