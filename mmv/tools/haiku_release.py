"""Haiku variables of a released checkpoint → the Flax model's variables, by a name rule.

The importers of DeepMind's MMV releases (`deepmind_checkpoint`) and of BraVe's
(`brave_checkpoint`) both read `params` and `state` as {Haiku module path: {name: array}} and
fill the model's {'params', 'batch_stats'} leaf by leaf: a rule gives each Flax leaf its Haiku
(collection, module, name). Haiku BatchNorm keeps scale, offset and its moving averages as
[1, ..., C], flattened here; an exponential moving average's `hidden` and `counter` are consumed
with its `average`. Every model leaf must be found at its shape and every release array used.
"""

import os

import jax
import numpy as np

from mmv import checkpoint as ckpt_lib
from mmv import train_step as step_lib


def layout_problem(tree):
  """Why a release's `params` / `state` are not {module path: {name: array}} dicts, or None."""
  for collection in ('params', 'state'):
    modules = tree[collection]
    if not (isinstance(modules, dict) and all(isinstance(k, str) and isinstance(v, dict)
                                              for k, v in modules.items())):
      return f'`{collection}` is not a dict {{Haiku module path: {{name: array}}}}'
  return None


def _flat(tree):
  """{(module, name): array} of a Haiku {module: {name: array}} tree."""
  return {(module, name): np.asarray(v) for module, d in tree.items() for name, v in d.items()}


def convert(params, state, abstract_variables, haiku_variable, known_unused):
  """(variables, problems): {'params', 'batch_stats'} numpy trees shaped like
  `abstract_variables`, and [(title, items)] for what does not fit: 'missing' model leaves,
  arrays of 'other shape', 'unused' release arrays (only titles with items).

  `haiku_variable(collection, path)` → (Haiku collection, module, name) of the Flax leaf at
  `path` (its keys) in `collection`; `known_unused(module)`: release modules left unused on
  purpose (e.g. heads the model does not have).
  """
  source = {'params': _flat(params), 'state': _flat(state)}
  used, missing, mismatched = set(), [], []

  def take(collection, path, leaf):
    hk_collection, module, name = haiku_variable(collection, path)
    used.add((hk_collection, module, name))
    if (module, name) not in source[hk_collection]:
      missing.append(f'{module}:{name} (for {collection}/{"/".join(path)})')
      return None
    value = source[hk_collection][(module, name)]
    if collection == 'batch_stats' or name in ('scale', 'offset'):
      value = value.reshape(-1)  # Haiku BN keeps [1, ..., C].
    if value.shape != leaf.shape:
      mismatched.append(f'{module}:{name} {list(value.shape)} '
                        f'(model {collection}/{"/".join(path)} {list(leaf.shape)})')
      return None
    return value.astype(leaf.dtype, copy=False)

  def consumed(collection, module, name):
    if (collection, module, name) in used:
      return True
    if (collection == 'state' and name in ('hidden', 'counter') and
        (collection, module, 'average') in used):  # Of a used moving average.
      return True
    return known_unused(module)

  converted = {
      collection: jax.tree_util.tree_map_with_path(
          lambda p, leaf, c=collection: take(c, [k.key for k in p], leaf),
          abstract_variables[collection])
      for collection in ('params', 'batch_stats')}
  unused = sorted(f'{m}:{n}' for c, d in source.items() for m, n in d if not consumed(c, m, n))
  problems = [(title, items) for title, items in (
      ('missing', missing), ('other shape', mismatched), ('unused', unused)) if items]
  return converted, problems


def problem_lines(problems):
  """One line per kind of problem, with its first few items."""
  return [f'  {title} ({len(items)}): ' + '; '.join(items[:6]) for title, items in problems]


def save_step_zero(directory, variables, tx, source):
  """Writes `variables` as the step-0 train state (with `tx`'s fresh optimiser state) to the
  checkpoint directory `directory`; returns the counts of parameters and BN statistics.

  Host arrays: orbax writes them in seconds, where the first save of the same state as device
  arrays took a minute on a 2-core CPU; restoring puts them onto the shardings the reader asks
  for.
  """
  train_state = step_lib.TrainState(
      step=np.zeros((), np.int32), params=variables['params'],
      batch_stats=variables['batch_stats'],
      opt_state=jax.device_get(jax.jit(tx.init)(variables['params'])))
  checkpointer = ckpt_lib.Checkpointer(directory)
  checkpointer.save(0, train_state, signature=ckpt_lib.variable_signature(variables),
                    extra={'imported_from': os.path.abspath(source)})
  checkpointer.wait_until_finished()
  checkpointer.close()
  return {'params': sum(x.size for x in jax.tree.leaves(variables['params'])),
          'batch_stats': sum(x.size for x in jax.tree.leaves(variables['batch_stats']))}
