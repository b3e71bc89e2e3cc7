"""Training: the loop around the train step, checkpoints, metrics and preemption.

`train(config, workdir)` runs (or resumes) a run and returns its summary, so tests and
notebooks call it like `launch.py` does. The step (`mmv.train_step`) is jitted over the
(data, fsdp) mesh: the batch is split over all devices, parameters and optimiser state are
placed by the config's sharding rules, the state is donated, and BatchNorm statistics and the
contrastive negatives span the global batch.
"""

import functools
import itertools
import os

import jax
import tensorflow as tf

from mmv import checkpoint as ckpt_lib
from mmv import methods
from mmv import optim
from mmv import preemption
from mmv import sharding as shard_lib
from mmv import throughput
from mmv import train_step as step_lib
from mmv import workdir_lock
from mmv import writers
from mmv.data import mixture
from mmv.data import pipeline
from mmv.data import records
from mmv.data import stream as data_stream

def input_batches(config, mesh, data_state, key_labels=None):
  """The global batches of the next steps, from `data_state` (a checkpoint's 'data', or None
  for the start), and `state_after(n)`: the data state to save once n of them were used.
  `key_labels`: per-record labels of a method's round (`mmv.data.stream.train_stream`).

  Each process reads its share of the files; `state_after` gathers every process's position,
  so all processes call it at the same steps.
  """
  local_batch = shard_lib.check_batch_size(config.train.batch_size, mesh, 'train.batch_size')
  stream = data_stream.train_stream(
      config.data, batch_size=local_batch, seed=config.seed, process_index=jax.process_index(),
      process_count=jax.process_count(), state=data_state, key_labels=key_labels)
  batches = pipeline.global_batches(stream, shard_lib.batch_sharding(mesh), config.data,
                                    config.data.prefetch)
  return batches, lambda n: data_stream.gather_state(stream.state_after(n))


def compile_train_step(config, model, tx, mesh, abstract, batch):
  """The train step compiled for these shardings, and its model FLOPs (None if unknown)."""
  state_shardings = jax.tree.map(lambda s: s.sharding, abstract)

  def jitted(loss_fn, microbatches):
    step = functools.partial(step_lib.train_step, model=model, tx=tx, loss_fn=loss_fn,
                             microbatches=microbatches, seed=config.seed)
    return jax.jit(step, in_shardings=(state_shardings, shard_lib.batch_sharding(mesh)),
                   out_shardings=(state_shardings, shard_lib.replicated(mesh)),
                   donate_argnums=0)

  lowered = jitted(step_lib.make_loss_fn(config, mesh), config.train.microbatches).lower(
      abstract, batch)
  plain = lowered
  if config.loss.implementation != 'dense' or config.train.microbatches != 1:
    plain = jitted(step_lib.make_loss_fn(config, mesh, 'dense'), 1).lower(abstract, batch)
  return lowered.compile(), throughput.model_flops(plain)


class NonFiniteLossError(FloatingPointError):
  """The loss or the gradients became NaN or infinite (with `train.nonfinite='stop'`)."""


def check_train_config(config, mesh):
  """Clear errors for settings of `config.train` that cannot work on this mesh."""
  c = config.train
  shard_lib.check_batch_size(c.batch_size, mesh, 'train.batch_size')
  per_device = c.batch_size // mesh.devices.size
  if c.microbatches < 1 or per_device % c.microbatches:
    raise ValueError(f'train.microbatches={c.microbatches} must divide the per-device batch '
                     f'{per_device} (train.batch_size / {mesh.devices.size} devices)')
  if c.nonfinite not in ('stop', 'skip'):
    raise ValueError(f"train.nonfinite={c.nonfinite!r}; choose 'stop' or 'skip'")
  if config.profile_steps and (len(config.profile_steps) != 2 or
                               not 0 < config.profile_steps[0] <= config.profile_steps[1]):
    raise ValueError(f'profile_steps={config.profile_steps!r}; give (first, last) steps, '
                     'first ≥ 1, or () for none')


class _StepMetrics:
  """The steps' metrics: kept on the devices, fetched to the host together at log steps.

  The loop waits for step s − 1 once it has dispatched step s (`dispatched`): the devices always
  have the next step queued, and the host never runs further ahead (the batches of queued steps
  would pile up in device memory). Waiting moves no data: the metrics stay on the devices until
  `log` (every `train.log_every` steps) or `check_finite` (before a checkpoint is saved) fetches
  those of the steps since, in one transfer. A non-finite step is acted on there: with
  `train.nonfinite='skip'` its update was already dropped on the devices and it is only
  reported; with 'stop' the run stops at that log or checkpoint step, before saving.
  """

  def __init__(self, config, writer, timer, checkpointer, data_state):
    self.config, self.writer, self.timer, self.checkpointer = config, writer, timer, checkpointer
    self.data_state = data_state  # step → the data state after it.
    self.history, self.skipped = [], []
    self._in_flight = None  # The metrics of the step dispatched last, until it is done.
    self._on_device = []  # [(step, metrics)] not fetched yet.
    self._fetched = []  # [(step, metrics)] on the host, since the last record.
    self._first = True

  def dispatched(self, step, metrics):
    self.wait()
    self._in_flight = metrics
    self._on_device.append((step, metrics))

  def wait(self):
    """Waits for the step in flight to finish, for the timer."""
    if self._in_flight is None:
      return
    jax.block_until_ready(self._in_flight)
    self._in_flight = None
    if self._first:
      # The first step also waits for the other processes to finish compiling and sets up
      # collectives: timing starts after it.
      self.timer.report()
      self._first = False
    else:
      self.timer.step_done()

  def check_finite(self):
    """Fetches the metrics not fetched yet; skips or stops at non-finite steps among them."""
    self.wait()
    if not self._on_device:
      return
    steps, metrics = zip(*self._on_device)
    self._on_device = []
    for step, m in zip(steps, jax.device_get(metrics)):
      if m['nonfinite']:
        self._nonfinite(step, m, now=steps[-1])
      self._fetched.append((step, m))

  def log(self):
    """Writes the record of the step dispatched last: its metrics, with `nonfinite` the number
    of non-finite steps since the previous record, throughput, `data_skipped` (records that
    failed to decode) and `data_unreadable` (unreadable shard tails), all processes, so far."""
    self.check_finite()
    step, metrics = self._fetched[-1]
    nonfinite = sum(int(m['nonfinite']) for _, m in self._fetched)
    self._fetched = []
    data = self.data_state(step)
    self.history.append((step, self.writer.write(
        step, {**metrics, 'nonfinite': nonfinite, **self.timer.report(),
               'data_skipped': sum(data['skipped']),
               'data_unreadable': sum(data.get('unreadable', ()))})))

  def _nonfinite(self, step, metrics, now):
    what = f'step {step}: loss {metrics["loss"]}, gradient norm {metrics["grad_norm"]}'
    if self.config.train.nonfinite == 'skip':
      self.skipped.append(step)
      if jax.process_index() == 0:
        print(f'{what}: not finite, update skipped', flush=True)
      return
    self.checkpointer.wait_until_finished()
    raise NonFiniteLossError(
        f'{what}: not finite; training stopped at step {now}. That update was not applied, '
        f'and the latest checkpoint (step {self.checkpointer.latest_step()}) is intact. '
        'Restarting resumes from it; set --config.train.nonfinite=skip to skip such steps '
        'instead.')


class _Profile:
  """The profiler trace of `profile_steps` = (first, last), of the steps this run takes: a run
  resumed inside the window traces from its first step."""

  def __init__(self, profile_steps, start_step, workdir, timer):
    first, self.last = profile_steps or (0, -1)
    self.first = max(first, start_step + 1)
    self.directory, self.timer = os.path.join(workdir, 'profile'), timer
    self.tracing = False

  def before(self, step):
    if step == self.first and step <= self.last:
      with self.timer.paused():
        jax.profiler.start_trace(self.directory)
      self.tracing = True

  def is_last(self, step):
    return self.tracing and step == self.last

  def stop(self):
    if self.tracing:
      with self.timer.paused():  # Writing the trace takes a while.
        jax.profiler.stop_trace()
      self.tracing = False


def _train_loop(config, workdir, state, inputs, compile_fn, checkpointer, signature, writer,
                watcher):
  """Runs the steps after `state.step` on `inputs` = (batches, state_after) from `input_fn`;
  returns (state, last step, preempted, results)."""
  c = config.train
  step = start_step = int(state.step)
  batches, state_after = inputs
  data_state = functools.lru_cache(maxsize=1)(lambda step: state_after(step - start_step))
  results, preempted = None, False
  if start_step >= c.steps:
    return state, step, preempted, results
  batches = watcher.interruptible(batches)
  try:
    return _run_steps(config, workdir, state, batches, data_state, compile_fn, checkpointer,
                      signature, writer, watcher)
  except preemption.StopRequested:
    # Before the first batch came: no step ran since the last checkpoint.
    return state, step, True, results
  finally:
    batches.close()


def _run_steps(config, workdir, state, batches, data_state, compile_fn, checkpointer,
               signature, writer, watcher):
  """`_train_loop` once the input is interruptible: raises `StopRequested` only while waiting
  for the first batch; a signal while waiting for a later one ends the loop after saving."""
  c = config.train
  step = start_step = int(state.step)
  first_batch = next(batches)  # Compiling needs a batch; its wait is not a step's.
  if jax.process_index() == 0:
    # Minutes for the paper's models; nothing else shows meanwhile.
    print('compiling the train step (first step)…', flush=True)
  step_fn, flops = compile_fn(first_batch)
  peak = throughput.peak_flops(jax.devices()[0].device_kind)
  timer = throughput.StepTimer(examples_per_step=c.batch_size, flops_per_step=flops,
                               peak_flops_total=peak and peak * jax.device_count())
  results = _StepMetrics(config, writer, timer, checkpointer, data_state)
  batches = itertools.chain([first_batch], batches)
  profile = _Profile(config.profile_steps if jax.process_index() == 0 else (), start_step,
                     workdir, timer)
  preempted, saved_step = False, start_step

  def save(step):
    with timer.paused():
      checkpointer.save(step, state, signature=signature,
                        extra={'data': data_state(step), 'data_order': data_stream.ORDER})

  try:
    for step in range(start_step + 1, c.steps + 1):
      try:
        with timer.waiting_for_input():
          batch = next(batches)
      except preemption.StopRequested:
        # A signal while waiting for this step's batch: the previous step is the last.
        step, preempted = step - 1, True
        if step > saved_step:
          results.check_finite()
          save(step)
        break
      profile.before(step)
      state, metrics = step_fn(state, batch)
      results.dispatched(step, metrics)
      preempted = watcher.should_stop(step)
      is_save_step = preempted or step % c.checkpoint_every == 0 or step == c.steps
      if step % c.log_every == 0 or step == c.steps:
        results.log()
      elif is_save_step and c.nonfinite == 'stop':
        results.check_finite()  # A checkpoint never holds the state after a non-finite step.
      if profile.is_last(step):
        results.wait()  # The trace ends with the step.
        profile.stop()
      if is_save_step:
        save(step)
        saved_step = step
      if preempted:
        break
    results.check_finite()  # The skipped steps after the last record (preempted).
  finally:
    profile.stop()  # Also when stopped inside the window (an error, a preemption).
  return state, step, preempted, results


def check_data(c):
  """Clear errors for a data config whose files are missing: before anything is written."""
  for source in mixture.train_sources(c):
    if not source.data_dir:
      raise ValueError('config.data.data_dir is empty: pass --config.data.data_dir=DIR, a '
                       "directory of shards (see the README's Datasets section)")
    if not tf.io.gfile.isdir(source.data_dir):
      raise FileNotFoundError(
          f'data_dir {source.data_dir!r} does not exist: make the synthetic dataset with '
          f'`python -m mmv.data.synthetic --output_dir {source.data_dir}`, or convert one '
          "(see the README's Datasets section)")
    records.split_files(source.data_dir, source.split)  # Its error names the shards missing.
  if 'text' in c.modalities and not tf.io.gfile.exists(pipeline.vocab_path(c)):
    raise FileNotFoundError(f'no vocabulary {pipeline.vocab_path(c)!r} (data.vocab) beside the '
                            'shards; the converters write it (see the README)')


def train(config, workdir, *, input_fn=input_batches,
          lock_stale_after=workdir_lock.STALE_AFTER_SECONDS):
  """Trains (resuming from the newest intact checkpoint in `workdir/checkpoints` if any; a
  damaged newer one is moved to `checkpoints/damaged/`).

  On SIGTERM or Ctrl-C (on any process) it saves a checkpoint at the next step boundary (the
  same step on every process) and returns with `preempted` set ('SIGTERM', or 'SIGINT' on every
  process if any got a Ctrl-C); a signal while it waits for input stops it too, with no new
  checkpoint if no step ran since the last. The config and the data are checked before the
  workdir is touched; the workdir is locked while training, and a lock whose heartbeat is older
  than `lock_stale_after` seconds is taken over (see `mmv.workdir_lock`).
  `input_fn(config, mesh, data_state)` gives the global batches and the
  data state after them (see `input_batches`). Returns {'step': last step, 'history': [(step,
  metrics), ...] logged in this call, 'state', 'preempted', 'skipped_steps'}.
  """
  mesh = shard_lib.make_mesh(config.mesh)
  check_train_config(config, mesh)
  check_data(config.data)
  # Watching from the start: a signal while restoring or compiling stops after one step.
  with preemption.PreemptionWatcher() as watcher, workdir_lock.WorkdirLock(
      workdir, stale_after=lock_stale_after):
    return _train(config, workdir, input_fn, watcher, mesh)


def _train(config, workdir, input_fn, watcher, mesh):
  model = step_lib.create_model(config)
  tx = step_lib.create_optimizer(config)
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                       max_to_keep=config.train.max_to_keep)
  abstract = step_lib.abstract_train_state(config, model, tx, mesh)
  signature = ckpt_lib.variable_signature(
      {'params': abstract.params, 'batch_stats': abstract.batch_stats})
  restored = checkpointer.restore_newest_intact(
      abstract, signature=signature, params_only=config.train.restore_params_only)
  if restored is not None:
    state, meta = restored
    if state.opt_state is None:  # train.restore_params_only: a new optimiser state.
      state = _with_new_opt_state(state, tx, abstract)
    print(f'resumed from step {int(state.step)} in {checkpointer.directory}', flush=True)
    data_state, note = data_stream.upgrade_state(config.data, meta.get('data'),
                                                 meta.get('data_order'))
    if note and jax.process_index() == 0:
      print(note, flush=True)
  else:
    state, data_state = step_lib.create_train_state(config, model, tx, mesh, abstract), None

  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=1))

  compile_fn = functools.partial(compile_train_step, config, model, tx, mesh, abstract)
  writer = writers.MetricWriter(workdir, config.train.steps, start_step=int(state.step))
  # A method that trains in rounds (XDC: new pseudo-labels each) gives each round's state and
  # input, and the round's last step; the loop runs a round at a time, saving at its end.
  rounds = getattr(methods.get(config), 'rounds', None)
  rounds = rounds and rounds(config, workdir, mesh, model, tx, abstract)
  compile_fn = rounds.compiled_once(compile_fn) if rounds else compile_fn
  history, skipped, run_config, labels = [], [], config, {}
  try:
    while True:
      if rounds:
        state, last_step, labels['key_labels'] = rounds.segment(state)
        run_config = rounds.config_until(last_step)
      state, step, preempted, results = _train_loop(
          run_config, workdir, state, input_fn(config, mesh, data_state, **labels), compile_fn,
          checkpointer, signature, writer, watcher)
      if results:
        history, skipped = history + results.history, skipped + results.skipped
      if not rounds or preempted or step >= config.train.steps:
        break
      data_state = results.data_state(step)
  finally:
    checkpointer.wait_until_finished()  # A stopped run still completes its last save.
    checkpointer.close()
    writer.close()
  if preempted:
    preempted = watcher.signal_name or 'SIGTERM'  # Multi-host: the preemption service's.
    if jax.process_index() == 0:
      what = 'interrupted (Ctrl-C)' if preempted == 'SIGINT' else 'preempted'
      # Saved now, or earlier when no step ran since (a signal while waiting for input).
      saved = f'saved the checkpoint of step {step}' if step else 'no step ran, nothing saved'
      print(f'{what}: {saved}; run the same command again to resume', flush=True)
  return {'step': step, 'history': history, 'state': state, 'preempted': preempted,
          'skipped_steps': skipped}


def _with_new_opt_state(state, tx, abstract):
  """`state` with the optimiser state that `tx` starts from, on its shardings; the learning-rate
  schedule's count is set to the restored step, so the schedule goes on where it was."""
  shardings = jax.tree.map(lambda s: s.sharding, abstract.opt_state)
  init = jax.jit(lambda params, step: optim.with_schedule_count(tx.init(params), step),
                 out_shardings=shardings)
  return state.replace(opt_state=init(state.params, state.step))
