"""Orbax checkpoints of the train state: async saves, restore onto target shardings, checks.

A checkpoint holds two items: `state` (the TrainState pytree) and `meta` (JSON: the step and
the shape signature of the model's variables). Restoring into a model whose signature differs
is refused with the names that differ, so a checkpoint of another model is never half-loaded.
"""

import os

import jax
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp


def variable_signature(variables):
  """{'params/a/b/kernel': 'float32[3, 4]', ...} for a pytree of arrays or ShapeDtypeStructs."""
  flat = jax.tree_util.tree_flatten_with_path(variables)[0]
  return {jax.tree_util.keystr(path, simple=True, separator='/'):
          f'{jax.numpy.dtype(leaf.dtype).name}{list(leaf.shape)}' for path, leaf in flat}


class IncompatibleCheckpointError(ValueError):
  """The checkpoint was written by a model with other variables."""


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
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=not read_only, read_only=read_only,
        enable_async_checkpointing=not read_only)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=('state', 'meta'))

  def latest_step(self):
    return self._manager.latest_step()

  def all_steps(self):
    return list(self._manager.all_steps(read=True))

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
    meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    check_signature(meta.meta['signature'], signature, f'{self.directory}/{step}')
    return step, meta.meta

  def restore(self, abstract_state, *, signature, step=None):
    """Restores `step` (default: latest) onto the shardings of `abstract_state`.

    `abstract_state` is a pytree of jax.ShapeDtypeStruct with `.sharding` set.
    """
    step, meta = self._checked_meta(step, signature)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state)))
    return restored.state, meta

  def restore_variables(self, abstract_variables, *, signature, step=None):
    """{'params', 'batch_stats'} of the state of `step` (default: latest), onto the shardings
    of `abstract_variables` (ShapeDtypeStructs); (variables, meta).

    A partial restore: the optimiser state is not read, so an evaluation holds the model
    alone (no Adam moments) and may place it on any mesh, whatever the training run's.
    """
    step, meta = self._checked_meta(step, signature)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.PyTreeRestore(
            item=abstract_variables, partial_restore=True,
            restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_variables))))
    return restored.state, meta

  def step_directory(self, step):
    """Where checkpoint `step` is stored."""
    return os.path.join(self.directory, str(int(step)))

  def wait_until_finished(self):
    self._manager.wait_until_finished()

  def close(self):
    self._manager.close()
