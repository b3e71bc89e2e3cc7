"""Training: the train state, the pure train step and the loop.

`train(config, workdir)` runs (or resumes) a run and returns its summary, so tests and
notebooks call it like `launch.py` does. The step is jitted over the (data, fsdp) mesh: the
batch is split over all devices, parameters and optimiser state are placed by the config's
sharding rules, the state is donated, and BatchNorm statistics and the contrastive negatives
span the global batch.
"""

import functools
import itertools
import os
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
import tensorflow as tf

from mmv import checkpoint as ckpt_lib
from mmv import chunked_losses
from mmv import losses
from mmv import optim
from mmv import preemption
from mmv import sharding as shard_lib
from mmv import throughput
from mmv import workdir_lock
from mmv import writers
from mmv.data import mixture
from mmv.data import pipeline
from mmv.data import records
from mmv.data import stream as data_stream
from mmv.data import text as text_ops
from mmv.models import mmv as mmv_model
from mmv.models import text as text_lib
from mmv.models import word2vec


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any

  def variables(self):
    return {'params': self.params, 'batch_stats': self.batch_stats}


def create_model(config):
  """The model for `config`, with the vocabulary size read from the dataset's vocab file."""
  words = text_ops.read_vocabulary(pipeline.vocab_path(config.data))
  return mmv_model.build_model(config.model, vocab_size=len(words) + 2)


def create_optimizer(config):
  """The optimiser for `config`; it leaves the model's frozen params (word2vec) alone."""
  return optim.make_optimizer(config.optim, config.train.steps,
                              frozen=mmv_model.frozen_params(config.model))


def dummy_inputs(data_config, batch_size=2):
  shapes = pipeline.output_shapes(data_config)
  return (jnp.zeros((batch_size,) + shapes['video'], jnp.float32),
          jnp.zeros((batch_size,) + shapes['audio'], jnp.float32),
          jnp.zeros((batch_size,) + shapes['text'], jnp.int32))


def init_state(rng, *, model, tx, data_config):
  variables = model.init(rng, *dummy_inputs(data_config), train=False)
  params = variables['params']
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables.get('batch_stats', {}), opt_state=tx.init(params))


def make_loss_fn(loss_config, mesh, implementation=None):
  """`(embeddings, batch) -> (loss, terms)` with the dense or the chunked contrastive losses.

  `implementation` overrides `loss_config.implementation` ('dense' | 'chunked').
  """
  c = loss_config
  implementation = implementation or c.implementation
  if implementation == 'dense':
    nce_fn, mil_nce_fn = losses.nce, losses.mil_nce
  elif implementation == 'chunked':
    ring = dict(mesh=mesh, axes=shard_lib.BATCH_AXES, chunk_size=c.chunk_size)
    nce_fn = functools.partial(chunked_losses.nce, **ring)
    mil_nce_fn = functools.partial(chunked_losses.mil_nce, **ring)
  else:
    raise ValueError(f"loss.implementation={implementation!r}; choose 'dense' or 'chunked'")
  return functools.partial(losses.mmv_loss, temperature=c.temperature, weight_va=c.weight_va,
                           weight_vt=c.weight_vt, nce_fn=nce_fn, mil_nce_fn=mil_nce_fn)


def embed(model, params, batch_stats, batch):
  """Training-mode embeddings of a batch and the updated BatchNorm statistics."""
  embeddings, updates = model.apply(
      {'params': params, 'batch_stats': batch_stats},
      batch['video'], batch['audio'], batch['text'], train=True, mutable=['batch_stats'])
  return embeddings, updates['batch_stats']


def loss_and_grads(params, batch_stats, batch, *, model, loss_fn):
  """(loss, terms, gradients, new BatchNorm statistics) of one pass over the whole batch."""

  def objective(params):
    embeddings, new_stats = embed(model, params, batch_stats, batch)
    loss, terms = loss_fn(embeddings, batch)
    return loss, (terms, new_stats)

  (loss, (terms, new_stats)), grads = jax.value_and_grad(objective, has_aux=True)(params)
  return loss, terms, grads, new_stats


def split_microbatches(tree, m):
  """[B, ...] → [m, B/m, ...]; micro-batch i holds rows i, i+m, i+2m, ...

  A device's contiguous block of rows then gives every micro-batch the same share, so each
  micro-batch is split over all devices without moving data.
  """
  return jax.tree.map(
      lambda a: jnp.swapaxes(a.reshape((a.shape[0] // m, m) + a.shape[1:]), 0, 1), tree)


def merge_microbatches(tree):
  """The inverse of `split_microbatches`."""
  return jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1).reshape((-1,) + a.shape[2:]), tree)


def cached_loss_and_grads(params, batch_stats, batch, *, model, loss_fn, microbatches):
  """`loss_and_grads` in micro-batches, with the negatives of the whole batch (GradCache).

  1. Embed each micro-batch, keeping only the embeddings ([B, D]: small).
  2. The loss of all embeddings together, and its gradient with respect to them.
  3. Embed each micro-batch again and backpropagate its slice of that gradient.
  The loss, its negatives and the gradients are those of the whole batch, with the activation
  memory of one micro-batch, for a second forward pass. One difference remains: BatchNorm
  normalises each micro-batch with the statistics of that micro-batch (over all devices), and
  its moving averages are updated once per micro-batch.
  """
  micro = split_microbatches(batch, microbatches)
  # A loop keeps one micro-batch's activations alive at a time. XLA:CPU runs convolution
  # gradients inside loops several times slower, and CPU runs are small: unrolled there.
  unroll = jax.default_backend() == 'cpu'

  def first_pass(stats, mb):
    embeddings, stats = embed(model, params, stats, mb)
    return stats, embeddings

  new_stats, embeddings = jax.lax.scan(first_pass, batch_stats, micro, unroll=unroll)
  (loss, terms), embedding_grads = jax.value_and_grad(loss_fn, has_aux=True)(
      merge_microbatches(embeddings), batch)

  def second_pass(grads, inputs):
    mb, g = inputs
    _, backprop = jax.vjp(lambda p: embed(model, p, batch_stats, mb)[0], params)
    return jax.tree.map(jnp.add, grads, backprop(g)[0]), None

  grads, _ = jax.lax.scan(second_pass, jax.tree.map(jnp.zeros_like, params),
                          (micro, split_microbatches(embedding_grads, microbatches)),
                          unroll=unroll)
  return loss, terms, grads, new_stats


def train_step(state, batch, *, model, tx, loss_fn, microbatches=1):
  """One optimiser step on a global batch; returns the new state and scalar metrics.

  A step whose loss or gradients are not finite keeps the parameters, BatchNorm statistics and
  Adam's moments as they were and reports `nonfinite` = 1; the step counter still advances,
  keeping the data position, and so does the learning-rate schedule, which follows it. The loop
  then stops or goes on as `train.nonfinite` says.
  """
  if microbatches == 1:
    loss, terms, grads, batch_stats = loss_and_grads(
        state.params, state.batch_stats, batch, model=model, loss_fn=loss_fn)
  else:
    loss, terms, grads, batch_stats = cached_loss_and_grads(
        state.params, state.batch_stats, batch, model=model, loss_fn=loss_fn,
        microbatches=microbatches)
  grad_norm = optax.global_norm(grads)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  keep_if_bad = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
  step = state.step + 1
  new_state = state.replace(
      step=step, params=keep_if_bad(params, state.params),
      batch_stats=keep_if_bad(batch_stats, state.batch_stats),
      opt_state=optim.with_schedule_count(keep_if_bad(opt_state, state.opt_state), step))
  metrics = {'loss': loss, **terms, 'grad_norm': grad_norm,
             'nonfinite': 1 - finite.astype(jnp.int32)}
  return new_state, metrics


def abstract_train_state(config, model, tx, mesh):
  """Shapes, dtypes and shardings of the train state, without computing it.

  Parameters and the optimiser's copies of them (Adam's moments) are placed by
  `config.mesh.param_rules`; the step, BatchNorm statistics and the rest are replicated.
  """
  init = functools.partial(init_state, model=model, tx=tx, data_config=config.data)
  shapes = jax.eval_shape(init, jax.random.key(0))
  replicated = shard_lib.replicated(mesh)
  params = shard_lib.param_shardings(shapes.params, mesh, config.mesh.param_rules)
  shardings = TrainState(
      step=replicated, params=params,
      batch_stats=jax.tree.map(lambda _: replicated, shapes.batch_stats),
      # Frozen parameters (word2vec) have an `optax.MaskedNode` in place of their moments.
      opt_state=optax.tree_map_params(
          tx, lambda x, s: x if isinstance(x, optax.MaskedNode) else s, shapes.opt_state,
          params, transform_non_params=lambda _: replicated,
          is_leaf=lambda x: isinstance(x, optax.MaskedNode)))
  return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                      shapes, shardings)


def create_train_state(config, model, tx, mesh, abstract=None):
  """Initialises the state directly onto its shardings (each device computes its part), with
  the word2vec vectors if any.

  `abstract`: `abstract_train_state(config, model, tx, mesh)` when already at hand.
  """
  abstract = abstract or abstract_train_state(config, model, tx, mesh)
  init = functools.partial(init_state, model=model, tx=tx, data_config=config.data)
  shardings = jax.tree.map(lambda s: s.sharding, abstract)
  state = jax.jit(init, out_shardings=shardings)(jax.random.key(config.seed))
  if config.model.word2vec:
    words = text_ops.read_vocabulary(pipeline.vocab_path(config.data))
    matrix = word2vec.load_matrix(config.model, words)
    state = state.replace(params=with_word_embeddings(state.params, matrix))
  return state


def with_word_embeddings(params, matrix):
  """`params` with the text backbone's embedding matrix replaced by `matrix`, same sharding.

  The optimiser state needs no change: frozen params have none.
  """

  def replace(path, x):
    if jax.tree_util.keystr(path, simple=True, separator='/') != text_lib.EMBEDDINGS_PATH:
      return x
    if x.shape != matrix.shape:
      raise ValueError(f'word embeddings {matrix.shape} do not fit the model\'s {x.shape}')
    return jax.device_put(matrix.astype(x.dtype), x.sharding)

  return jax.tree_util.tree_map_with_path(replace, params)


def input_batches(config, mesh, data_state):
  """The global batches of the next steps, from `data_state` (a checkpoint's 'data', or None
  for the start), and `state_after(n)`: the data state to save once n of them were used.

  Each process reads its share of the files; `state_after` gathers every process's position,
  so all processes call it at the same steps.
  """
  local_batch = shard_lib.check_batch_size(config.train.batch_size, mesh, 'train.batch_size')
  stream = data_stream.train_stream(
      config.data, batch_size=local_batch, seed=config.seed, process_index=jax.process_index(),
      process_count=jax.process_count(), state=data_state)
  batches = pipeline.global_batches(stream, shard_lib.batch_sharding(mesh), config.data,
                                    config.data.prefetch)
  return batches, lambda n: data_stream.gather_state(stream.state_after(n))


def compile_train_step(config, model, tx, mesh, abstract, batch):
  """The train step compiled for these shardings, and its model FLOPs (None if unknown)."""
  state_shardings = jax.tree.map(lambda s: s.sharding, abstract)

  def jitted(loss_fn, microbatches):
    step = functools.partial(train_step, model=model, tx=tx, loss_fn=loss_fn,
                             microbatches=microbatches)
    return jax.jit(step, in_shardings=(state_shardings, shard_lib.batch_sharding(mesh)),
                   out_shardings=(state_shardings, shard_lib.replicated(mesh)),
                   donate_argnums=0)

  lowered = jitted(make_loss_fn(config.loss, mesh), config.train.microbatches).lower(
      abstract, batch)
  plain = lowered
  if config.loss.implementation != 'dense' or config.train.microbatches != 1:
    plain = jitted(make_loss_fn(config.loss, mesh, 'dense'), 1).lower(abstract, batch)
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


def train(config, workdir, *, input_fn=input_batches):
  """Trains (resuming from the newest intact checkpoint in `workdir/checkpoints` if any; a
  damaged newer one is moved to `checkpoints/damaged/`).

  On SIGTERM or Ctrl-C it saves a checkpoint at the next step boundary (the same step on every
  process) and returns with `preempted` set ('SIGTERM' or 'SIGINT'); a signal while it waits for
  input stops it too, with no new checkpoint if no step ran since the last. The config and the
  data are checked before the workdir is touched; the workdir is locked while training (see
  `mmv.workdir_lock`). `input_fn(config, mesh, data_state)` gives the global batches and the
  data state after them (see `input_batches`). Returns {'step': last step, 'history': [(step,
  metrics), ...] logged in this call, 'state', 'preempted', 'skipped_steps'}.
  """
  mesh = shard_lib.make_mesh(config.mesh)
  check_train_config(config, mesh)
  check_data(config.data)
  # Watching from the start: a signal while restoring or compiling stops after one step.
  with preemption.PreemptionWatcher() as watcher, workdir_lock.WorkdirLock(workdir):
    return _train(config, workdir, input_fn, watcher, mesh)


def _train(config, workdir, input_fn, watcher, mesh):
  model = create_model(config)
  tx = create_optimizer(config)
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                       max_to_keep=config.train.max_to_keep)
  abstract = abstract_train_state(config, model, tx, mesh)
  signature = ckpt_lib.variable_signature(
      {'params': abstract.params, 'batch_stats': abstract.batch_stats})
  restored = checkpointer.restore_newest_intact(abstract, signature=signature)
  if restored is not None:
    state, meta = restored
    print(f'resumed from step {int(state.step)} in {checkpointer.directory}', flush=True)
    data_state, note = data_stream.upgrade_state(config.data, meta.get('data'),
                                                 meta.get('data_order'))
    if note and jax.process_index() == 0:
      print(note, flush=True)
  else:
    state, data_state = create_train_state(config, model, tx, mesh, abstract), None

  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=1))

  compile_fn = functools.partial(compile_train_step, config, model, tx, mesh, abstract)
  writer = writers.MetricWriter(workdir, config.train.steps, start_step=int(state.step))
  try:
    state, step, preempted, results = _train_loop(
        config, workdir, state, input_fn(config, mesh, data_state), compile_fn,
        checkpointer, signature, writer, watcher)
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
  return {'step': step, 'history': results.history if results else [], 'state': state,
          'preempted': preempted, 'skipped_steps': results.skipped if results else []}
