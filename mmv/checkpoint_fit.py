"""Whether a checkpoint fits what it is restored into, told before any array is read.

Two checks, each naming what differs: the model's variables (the `meta` item's signature of
params and batch_stats: another model raises `IncompatibleCheckpointError`), and the whole
train state's tree structure, shapes and dtypes (the `state` item's orbax metadata: another
optimiser state raises `StateMismatchError`). A checkpoint that does not fit is not damaged.
"""

import jax
import orbax.checkpoint as ocp

_SHOWN = 3  # Differing paths named per kind in the one-line message.


class IncompatibleCheckpointError(ValueError):
  """The checkpoint was written by a model with other variables."""


class StateMismatchError(IncompatibleCheckpointError):
  """The checkpoint's train state has another tree structure or shapes than the config's
  (its model's variables fit: another optimiser, e.g.); `step` says which checkpoint and
  `differences` what differs."""

  def __init__(self, message, step, differences):
    super().__init__(message)
    self.step, self.differences = step, differences


def shape_name(leaf):
  """'float32[3, 4]' for an array, a ShapeDtypeStruct or orbax's metadata of a saved array."""
  return f'{jax.numpy.dtype(leaf.dtype).name}{list(leaf.shape)}'


def variable_signature(variables):
  """{'params/a/b/kernel': 'float32[3, 4]', ...} for a pytree of arrays or ShapeDtypeStructs."""
  flat = jax.tree_util.tree_flatten_with_path(variables)[0]
  return {jax.tree_util.keystr(path, simple=True, separator='/'): shape_name(leaf)
          for path, leaf in flat}


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


def tree_shapes(tree):
  """{'opt_state/0/mu/heads/.../kernel': 'float32[3, 4]'} of a target pytree (arrays or
  ShapeDtypeStructs) or of a saved one's metadata, under orbax's names for its nodes. Empty
  nodes (optax's EmptyState) are left out: orbax saves nothing for them."""
  flat = ocp.tree.to_flat_dict(ocp.tree.serialize_tree(tree, keep_empty_nodes=True), sep='/')
  return {path: shape_name(leaf) for path, leaf in flat.items()
          if hasattr(leaf, 'shape') and hasattr(leaf, 'dtype')}


def _listed(items):
  return ', '.join(items[:_SHOWN]) + (f' ({len(items)} in all)' if len(items) > _SHOWN else '')


def check_state_fits(saved, target, step, where):
  """Raises `StateMismatchError` where the paths, shapes or dtypes of `saved` (`tree_shapes` of
  the checkpoint's metadata) differ from those of `target` (`tree_shapes` of the train state
  the config makes), in one line naming them and how to go on."""
  only_saved = sorted(set(saved) - set(target))
  only_target = sorted(set(target) - set(saved))
  changed = sorted(p for p in set(saved) & set(target) if saved[p] != target[p])
  differences = [f'{title}: {_listed(items)}' for title, items in (
      ('on disk only', [f'{p} {saved[p]}' for p in only_saved]),
      ('in this config only', [f'{p} {target[p]}' for p in only_target]),
      ('other shape', [f'{p} {saved[p]} on disk, {target[p]} here' for p in changed])) if items]
  if differences:
    differences = '; '.join(differences)
    raise StateMismatchError(
        f'checkpoint {step} in {where} does not fit the train state of this config (the model '
        f'fits; the optimiser state differs, e.g. after a change to optim.*): '
        f'{differences}. Nothing was moved. Resume with the config that wrote it '
        "(the workdir's config.json), or pass --config.train.restore_params_only=True to "
        'restore its step, parameters and BatchNorm statistics with a new optimiser state',
        step, differences)
