"""Orbax checkpoints of the train state: async saves, restore onto target shardings, checks.

A checkpoint holds two items: `state` (the TrainState pytree) and `meta` (JSON: the step and
the shape signature of the model's variables). Before any array is read, the checkpoint is
compared with what it is restored into: one of another model (other variables) raises
`IncompatibleCheckpointError`, one whose train state has another tree structure or shapes
(another optimiser, e.g. after `optim.weight_decay` turned Adam into AdamW)
`StateMismatchError`, each naming what differs. Neither is damage: nothing is moved.

A checkpoint whose files are missing or unreadable (a truncated `manifest.ocdbt` or data file,
a lost `meta/metadata` or `_METADATA`) raises `DamagedCheckpointError`, one line naming its
step. Training then resumes from the newest checkpoint that restores, moving the damaged one to
`checkpoints/damaged/<step>-<time>` (kept for inspection; orbax lists only numbered
directories as steps, so it no longer counts and the step can be saved again). With several
processes, each reads its own part first and they agree on the outcome before anything is
moved (see `restore_newest_intact`).
"""

import glob
import os
import time

from absl import logging
from etils import epath
import jax
from jax.experimental import multihost_utils
import numpy as np
import orbax.checkpoint as ocp
import tensorstore as ts

from mmv import checkpoint_fit


variable_signature = checkpoint_fit.variable_signature
IncompatibleCheckpointError = checkpoint_fit.IncompatibleCheckpointError
StateMismatchError = checkpoint_fit.StateMismatchError


class DamagedCheckpointError(ValueError):
  """A checkpoint's files are missing or unreadable; `step` says which."""

  def __init__(self, message, step):
    super().__init__(message)
    self.step = step


def _chain(error):
  """`error` and the errors it was raised from or while handling, outermost first (a context
  that the code suppressed with `raise ... from None` left out)."""
  while error is not None:
    yield error
    error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)


def _is_damage(error):
  """Whether `error`, raised by orbax while reading, comes from the checkpoint's files.

  Tensorstore reports unreadable arrays as ValueError (DATA_LOSS, NOT_FOUND, OUT_OF_RANGE,
  FAILED_PRECONDITION, or a decoding error), at times wrapped in a bare Exception; the JSON
  files fail with an OSError or a JSONDecodeError. Orbax's own ValueErrors for a tree that does
  not fit are ruled out before: the metadata was compared first (`checkpoint_fit`). A device
  failure (out of memory: a jax RuntimeError) is not damage.
  """
  return any(isinstance(e, (OSError, ValueError)) for e in _chain(error))


def _reason(error):
  """The innermost message of `error`'s chain, without tensorstore's spec dump: one line."""
  *_, error = _chain(error)
  text = (' '.join(str(error).split()) or type(error).__name__).split(' [tensorstore_spec')[0]
  # Tensorstore nests contexts outside in: the status code leads, the cause comes last.
  return text if len(text) <= 300 else f'{text[:60]} ... {text[-220:]}'


def existing_steps(directory):
  """Steps of the complete (finalized) checkpoints in `directory`; [] where it does not exist.
  Reads the directory listing only: nothing is created, no manager is started."""
  if not os.path.isdir(directory):
    return []
  return sorted(ocp.path.step.checkpoint_steps(directory))


def workdir_step(workdir, step=None):
  """`step`, or the latest, checked to be a complete checkpoint of the run in `workdir`."""
  directory = os.path.join(workdir, 'checkpoints')
  steps = existing_steps(directory)
  if not steps:
    raise FileNotFoundError(f'no checkpoint in {directory}')
  if step is None:
    return steps[-1]
  if int(step) not in steps:
    raise FileNotFoundError(f'no checkpoint of step {step} in {directory}; steps there: {steps}')
  return int(step)


def start_reader():
  """Start-up of the commands that read a run's checkpoints (evaluation, fine-tuning,
  embedding, search, the web page, export, deflation): TensorFlow, which only feeds tf.data on
  the host, sees no GPU (accelerator memory is JAX's); absl logs at WARNING, without the line
  orbax writes each time it opens a checkpoint directory read-only, as they do on purpose."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (only these commands need it)
  tf.config.set_visible_devices([], 'GPU')
  logging.set_verbosity(logging.WARNING)
  logging.get_absl_logger().addFilter(
      lambda record: not record.getMessage().startswith('Given directory is read only'))


# The outcome of one process's reading of a checkpoint, which the processes share.
_RESTORED, _UNFIT, _DAMAGED, _FAILED = range(4)
_REASON_BYTES = 400


class Checkpointer:
  """Saves and restores `(state, meta)` under `directory` with an orbax CheckpointManager.

  Training's reads go through orbax's handlers, not the manager: the manager's restore ends in
  a barrier of all processes, which a process whose read failed never reaches while the others
  wait in it (or meet its next collective there: a mismatch). They are local to each process.
  """

  def __init__(self, directory, *, max_to_keep=3, read_only=False):
    self.directory = os.path.abspath(directory)
    # Read-only: no saving interval and nothing to prune (orbax warns if it must reset them).
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None if read_only else max_to_keep, create=not read_only,
        read_only=read_only, save_interval_steps=0 if read_only else 1,
        enable_async_checkpointing=not read_only)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=('state', 'meta'))
    self._state_handler = ocp.PyTreeCheckpointHandler()
    self._meta_handler = ocp.JsonCheckpointHandler()

  def latest_step(self):
    return self._manager.latest_step()

  def all_steps(self):
    """Every step on disk now, those another process wrote since this one looked included."""
    self._manager.reload()
    return list(self._manager.all_steps())

  def save(self, step, state, *, signature, extra=None):
    """Starts an async save; returns at once. All processes must call it, at the same step."""
    if jax.process_count() > 1:
      multihost_utils.assert_equal(int(step), f'processes disagree on the step to save ({step})')
    meta = dict(step=int(step), signature=signature, **(extra or {}))
    return self._manager.save(int(step), args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))

  def _existing(self, step):
    """`step`, or the latest where None; FileNotFoundError where there is no such checkpoint."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'no checkpoint in {self.directory}')
    if step not in self.all_steps():
      raise FileNotFoundError(f'no checkpoint of step {step} in {self.directory}; '
                              f'steps there: {self.all_steps()}')
    return step

  def _checked_meta(self, step, signature):
    """The `meta` item of checkpoint `step`, its signature checked."""
    meta = self._read(step, lambda: self._meta_handler.restore(
        epath.Path(self.step_directory(step), 'meta'), args=ocp.args.JsonRestore()))
    checkpoint_fit.check_signature(meta['signature'], signature, f'{self.directory}/{step}')
    return meta

  def _check_fits(self, step, target):
    """Compares the `state` item's saved tree (its orbax metadata, which orbax completes from
    the arrays' own metadata, through the OCDBT manifest) with `target`'s."""

    def read():
      self._check_manifest(step)
      return self._state_handler.metadata(epath.Path(self.step_directory(step), 'state')).tree

    saved = self._read(step, read)
    checkpoint_fit.check_state_fits(checkpoint_fit.tree_shapes(saved),
                                    checkpoint_fit.tree_shapes(target), step, self.directory)

  def _check_manifest(self, step):
    """Reads the OCDBT manifest of the `state` item alone: a damaged one made orbax's restore
    fail in every concurrent array read, each printing an 'Event loop is closed' traceback
    after the first error. Missing (while data files exist) or undecodable is damage."""
    state = os.path.join(self.step_directory(step), 'state')
    if not glob.glob(os.path.join(state, 'ocdbt.process_*')):
      return  # Not the OCDBT layout: orbax's restore checks it.
    # A spec, not a file:// URL: a path holding '#', '?' or '%20' is no URL.
    kvstore = ts.KvStore.open(
        {'driver': 'ocdbt', 'base': {'driver': 'file', 'path': state + '/'}}).result()
    if not kvstore.list().result():
      raise FileNotFoundError(f'{state}/manifest.ocdbt lists no arrays (missing or empty)')

  def _read_state(self, step, item, *, partial):
    """The arrays of `item` (ShapeDtypeStructs with shardings) from the `state` item of `step`:
    this process's shards only, without orbax's barriers."""

    def read():
      self._check_manifest(step)
      return self._state_handler.restore(
          epath.Path(self.step_directory(step), 'state'), args=ocp.args.PyTreeRestore(
              item=item, partial_restore=partial,
              restore_args=ocp.checkpoint_utils.construct_restore_args(item)))

    return self._read(step, read)

  def _read(self, step, read):
    """`read()`, its failures to read checkpoint `step`'s files raised as damage."""
    try:
      return read()
    except Exception as e:  # pylint: disable=broad-except  (tensorstore raises bare Exception)
      if not _is_damage(e):
        raise
      others = [s for s in existing_steps(self.directory) if s != step]  # No collective.
      raise DamagedCheckpointError(
          f'checkpoint {step} in {self.directory} is damaged ({_reason(e)}); the other steps '
          f'there: {others}', step) from e

  def restore(self, abstract_state, *, signature, step=None):
    """Restores `step` (default: latest) onto the shardings of `abstract_state`, a pytree of
    jax.ShapeDtypeStruct with `.sharding` set; (state, meta)."""
    step = self._existing(step)
    meta = self._checked_meta(step, signature)
    self._check_fits(step, abstract_state)
    return self._read_state(step, abstract_state, partial=False), meta

  def restore_variables(self, abstract_variables, *, signature, step=None):
    """{'params', 'batch_stats'} of the state of `step` (default: latest), onto the shardings
    of `abstract_variables` (ShapeDtypeStructs); (variables, meta).

    A partial restore: the optimiser state is not read, so an evaluation holds the model
    alone (no Adam moments) and may place it on any mesh, whatever the training run's.
    """
    step = self._existing(step)
    meta = self._checked_meta(step, signature)
    args = ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item=abstract_variables, partial_restore=True,
        restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_variables)))

    def read():  # Through the manager: an evaluation is one process, no other to wait for.
      self._check_manifest(step)
      return self._manager.restore(step, args=args).state

    return self._read(step, read), meta

  def restore_part(self, abstract_part, *, step=None):
    """(arrays, meta) of `abstract_part` from checkpoint `step` (default: latest): a subtree of
    {'params', 'batch_stats'} as ShapeDtypeStructs with shardings (fine-tuning reads a
    pretrained run's video backbone this way). The saved model must have every variable of the
    part at its shape (`IncompatibleCheckpointError` naming those it lacks or has otherwise);
    nothing else is read. Each process reads its own shards, without barriers: all processes
    call it."""
    step = self._existing(step)
    meta = self._read(step, lambda: self._meta_handler.restore(
        epath.Path(self.step_directory(step), 'meta'), args=ocp.args.JsonRestore()))
    expected = variable_signature(abstract_part)
    saved = {k: v for k, v in meta['signature'].items() if k in expected}
    checkpoint_fit.check_signature(saved, expected, f'{self.directory}/{step}')
    return self._read_state(step, abstract_part, partial=True), meta

  def _restore_to_train(self, step, abstract_state, signature, params_only):
    """(state, meta, note) of checkpoint `step` for training. With `params_only`, a state whose
    optimiser state does not fit comes back with its step, params and batch_stats and
    `opt_state=None`, and `note` says so (None otherwise)."""
    meta = self._checked_meta(step, signature)
    try:
      self._check_fits(step, abstract_state)
    except StateMismatchError as e:
      if not params_only:
        raise
      item = {'step': abstract_state.step, 'params': abstract_state.params,
              'batch_stats': abstract_state.batch_stats}
      state = abstract_state.replace(opt_state=None,
                                     **self._read_state(step, item, partial=True))
      return state, meta, (
          f'checkpoint {step}: its train state does not fit this config ({e.differences}); '
          'restored its step, parameters and BatchNorm statistics (train.restore_params_only) '
          'with a new optimiser state')
    return self._read_state(step, abstract_state, partial=False), meta, None

  def restore_newest_intact(self, abstract_state, *, signature, params_only=False):
    """(state, meta) of the newest checkpoint that restores, or None where there is none.

    Each process reads its own part of the newest checkpoint, catching its errors; then they
    share the outcomes (one collective) and decide together. All restored: done. Damaged on
    any process: process 0 moves it aside (`move_aside`, never deleted, one line saying so)
    and all try the next older one. A checkpoint that does not fit (`StateMismatchError`,
    `IncompatibleCheckpointError`; unless `params_only`, see `_restore_to_train`) or another
    failure (a device's) is raised on every process, and nothing is moved.
    """
    while (step := self.latest_step()) is not None:
      restored, note, error = None, None, None
      try:
        state, meta, note = self._restore_to_train(step, abstract_state, signature, params_only)
        restored = state, meta
      except Exception as e:  # pylint: disable=broad-except  (shared, then raised)
        error = e
      outcomes = _shared_outcomes(_outcome(error), _reason(error) if error else '')
      kinds = [kind for kind, _ in outcomes]
      if max(kinds) == _RESTORED:
        if note and jax.process_index() == 0:
          print(note, flush=True)
        return restored
      # Damage moves a checkpoint only when nothing else went wrong: one that does not fit
      # (or a device's failure) on any process is raised, and nothing is moved.
      if _FAILED in kinds or _UNFIT in kinds or _DAMAGED not in kinds:
        if error is not None:
          raise error
        process, reason = next((i, r) for i, (k, r) in enumerate(outcomes) if k != _RESTORED)
        raise RuntimeError(f'process {process} failed to restore checkpoint {step} in '
                           f'{self.directory}: {reason}')
      moved = self.move_aside(step)
      if jax.process_index() == 0:
        damaged = [i for i, kind in enumerate(kinds) if kind == _DAMAGED]
        where = f' on process {", ".join(map(str, damaged))}' if len(kinds) > 1 else ''
        print(f'skipped checkpoint {step}: damaged{where} ({outcomes[damaged[0]][1]}); moved it '
              f'to {moved}', flush=True)
    return None

  def move_aside(self, step):
    """Renames checkpoint `step` to `damaged/<step>-<UTC time>` under the directory.

    Process 0 renames and gets the new path (None elsewhere); all processes then re-read the
    step list, which no longer holds it.
    """
    moved = None
    if jax.process_index() == 0:
      moved = os.path.join(self.directory, 'damaged',
                           f'{int(step)}-{time.strftime("%Y%m%d-%H%M%S", time.gmtime())}')
      os.makedirs(os.path.dirname(moved), exist_ok=True)
      os.rename(self.step_directory(step), moved)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f'moved checkpoint {step} aside')
    self._manager.reload()
    return moved

  def step_directory(self, step):
    """Where checkpoint `step` is stored."""
    return os.path.join(self.directory, str(int(step)))

  def wait_until_finished(self):
    self._manager.wait_until_finished()

  def close(self):
    self._manager.close()
    self._state_handler.close()
    self._meta_handler.close()


def _outcome(error):
  if error is None:
    return _RESTORED
  if isinstance(error, DamagedCheckpointError):
    return _DAMAGED
  return _UNFIT if isinstance(error, IncompatibleCheckpointError) else _FAILED


def _shared_outcomes(kind, reason):
  """[(kind, reason)] of every process, in process order, from one all-gather."""
  if jax.process_count() == 1:
    return [(kind, reason)]
  encoded = reason.encode()[:_REASON_BYTES].ljust(_REASON_BYTES, b'\0')
  local = np.frombuffer(bytes([kind]) + encoded, np.uint8)
  gathered = np.asarray(multihost_utils.process_allgather(local))
  return [(int(row[0]), bytes(row[1:]).rstrip(b'\0').decode(errors='replace'))
          for row in gathered]
