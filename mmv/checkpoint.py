"""Orbax checkpoints of the train state: async saves, restore onto target shardings, checks.

A checkpoint holds two items: `state` (the TrainState pytree) and `meta` (JSON: the step and
the shape signature of the model's variables). Restoring into a model whose signature differs
is refused with the names that differ, so a checkpoint of another model is never half-loaded.

A checkpoint whose files are missing or unreadable (a truncated `manifest.ocdbt` or data file,
a lost `meta/metadata`) raises `DamagedCheckpointError`, one line naming its step. Training then
resumes from the newest checkpoint that restores, moving the damaged one to
`checkpoints/damaged/<step>-<time>` (kept for inspection; orbax lists only numbered
directories as steps, so it no longer counts and the step can be saved again).
"""

import glob
import os
import time

import jax
from jax.experimental import multihost_utils
import numpy as np
import orbax.checkpoint as ocp
import tensorstore as ts


def variable_signature(variables):
  """{'params/a/b/kernel': 'float32[3, 4]', ...} for a pytree of arrays or ShapeDtypeStructs."""
  flat = jax.tree_util.tree_flatten_with_path(variables)[0]
  return {jax.tree_util.keystr(path, simple=True, separator='/'):
          f'{jax.numpy.dtype(leaf.dtype).name}{list(leaf.shape)}' for path, leaf in flat}


class IncompatibleCheckpointError(ValueError):
  """The checkpoint was written by a model with other variables."""


class DamagedCheckpointError(ValueError):
  """A checkpoint's files are missing or unreadable; `step` says which."""

  def __init__(self, message, step):
    super().__init__(message)
    self.step = step


def _is_damage(error):
  """Whether `error`, raised by orbax while reading, comes from the checkpoint's files.

  Tensorstore reports unreadable arrays as ValueError (DATA_LOSS, NOT_FOUND, OUT_OF_RANGE), at
  times wrapped in a bare Exception; the JSON item fails with an OSError or a decoding
  ValueError. A device failure (out of memory: a jax RuntimeError) is not damage.
  """
  while error is not None:
    if isinstance(error, (OSError, ValueError)):
      return True
    error = error.__cause__ or error.__context__
  return False


def _reason(error):
  """The innermost message of `error`'s chain, without tensorstore's spec dump: one line."""
  while error.__cause__ is not None or error.__context__ is not None:
    error = error.__cause__ or error.__context__
  text = (' '.join(str(error).split()) or type(error).__name__).split(' [tensorstore_spec')[0]
  # Tensorstore nests contexts outside in: the status code leads, the cause comes last.
  return text if len(text) <= 300 else f'{text[:60]} ... {text[-220:]}'


def existing_steps(directory):
  """Steps of the complete (finalized) checkpoints in `directory`; [] where it does not exist.
  Reads the directory listing only: nothing is created, no manager is started."""
  if not os.path.isdir(directory):
    return []
  return sorted(ocp.path.step.checkpoint_steps(directory))


def check_signature(saved, expected, where):
  if saved == expected:
    return
  missing = sorted(set(expected) - set(saved))
  unexpected = sorted(set(saved) - set(expected))
  changed = sorted(k for k in set(saved) & set(expected) if saved[k] != expected[k])
  lines = [f'checkpoint {where} is from another model:']
  for title, keys, show in (('missing', missing, expected), ('unexpected', unexpected, saved)):
    if keys:
      lines.append(f'  {title} ({len(keys)}): ' + ', '.join(f'{k} {show[k]}' for k in keys[:5]))
  if changed:
    lines.append(f'  other shape ({len(changed)}): ' + ', '.join(
        f'{k} {saved[k]} (model: {expected[k]})' for k in changed[:5]))
  raise IncompatibleCheckpointError('\n'.join(lines))


class Checkpointer:
  """Saves and restores `(state, meta)` under `directory` with an orbax CheckpointManager."""

  def __init__(self, directory, *, max_to_keep=3, read_only=False):
    self.directory = os.path.abspath(directory)
    # Read-only: no saving interval and nothing to prune (orbax warns if it must reset them).
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None if read_only else max_to_keep, create=not read_only,
        read_only=read_only, save_interval_steps=0 if read_only else 1,
        enable_async_checkpointing=not read_only)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=('state', 'meta'))

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

  def _checked_meta(self, step, signature):
    """(step, meta) of checkpoint `step` (default: latest), its signature checked."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'no checkpoint in {self.directory}')
    if step not in self.all_steps():
      raise FileNotFoundError(f'no checkpoint of step {step} in {self.directory}; '
                              f'steps there: {self.all_steps()}')
    meta = self._read(step, ocp.args.Composite(meta=ocp.args.JsonRestore()))
    check_signature(meta.meta['signature'], signature, f'{self.directory}/{step}')
    return step, meta.meta

  def _check_manifest(self, step):
    """Reads the OCDBT manifest of the `state` item alone: a damaged one made orbax's restore
    fail in every concurrent array read, each printing an 'Event loop is closed' traceback
    after the first error. Missing (while data files exist) or undecodable is damage."""
    state = os.path.join(self.step_directory(step), 'state')
    if not glob.glob(os.path.join(state, 'ocdbt.process_*')):
      return  # Not the OCDBT layout: orbax's restore checks it.
    kvstore = ts.KvStore.open({'driver': 'ocdbt', 'base': f'file://{state}/'}).result()
    if not kvstore.list().result():
      raise FileNotFoundError(f'{state}/manifest.ocdbt lists no arrays (missing or empty)')

  def _read(self, step, args):
    try:
      if 'state' in args:
        self._check_manifest(step)
      return self._manager.restore(step, args=args)
    except Exception as e:  # pylint: disable=broad-except  (tensorstore raises bare Exception)
      if not _is_damage(e):
        raise
      others = [s for s in self.all_steps() if s != step]
      raise DamagedCheckpointError(
          f'checkpoint {step} in {self.directory} is damaged ({_reason(e)}); the other steps '
          f'there: {others}', step) from e

  def restore(self, abstract_state, *, signature, step=None):
    """Restores `step` (default: latest) onto the shardings of `abstract_state`.

    `abstract_state` is a pytree of jax.ShapeDtypeStruct with `.sharding` set.
    """
    step, meta = self._checked_meta(step, signature)
    restored = self._read(step, ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state)))
    return restored.state, meta

  def restore_variables(self, abstract_variables, *, signature, step=None):
    """{'params', 'batch_stats'} of the state of `step` (default: latest), onto the shardings
    of `abstract_variables` (ShapeDtypeStructs); (variables, meta).

    A partial restore: the optimiser state is not read, so an evaluation holds the model
    alone (no Adam moments) and may place it on any mesh, whatever the training run's.
    """
    step, meta = self._checked_meta(step, signature)
    restored = self._read(step, ocp.args.Composite(
        state=ocp.args.PyTreeRestore(
            item=abstract_variables, partial_restore=True,
            restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_variables))))
    return restored.state, meta

  def restore_newest_intact(self, abstract_state, *, signature):
    """(state, meta) of the newest checkpoint that restores, or None where there is none.

    A damaged newer one is moved aside (`move_aside`), never deleted, with one line saying so.
    Every process must call it: they agree on each step's outcome before anything is moved.
    """
    while (step := self.latest_step()) is not None:
      try:
        restored, error = self.restore(abstract_state, signature=signature, step=step), None
      except DamagedCheckpointError as e:
        restored, error = None, e
      damaged = error is not None
      if jax.process_count() > 1:  # Damage seen by one process (its own ocdbt files) counts.
        damaged = bool(multihost_utils.process_allgather(np.int32(damaged)).any())
      if not damaged:
        return restored
      moved = self.move_aside(step)
      if jax.process_index() == 0:
        print(f'skipped checkpoint {step}: {error or "damaged on another process"}; moved it to '
              f'{moved}', flush=True)
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
