"""DeepMind's released MMV checkpoints (pickled Haiku `params` and `state`) as checkpoints of
this framework.

`convert` maps every variable of the configured model from the release by the rules of
`deepmind_names` and checks that nothing is missing, nothing has another shape and nothing in
the release is left over (but the two heads the reference never trains). `import_release`
writes the result as step 0 of a workdir's checkpoints, with a freshly initialised optimiser
state, so `python -m mmv.evaluate` reads it and training can continue from it.

The release's pickle is read by an allow-list unpickler (`safe_pickle`): numpy arrays in plain
containers, and the release files as DeepMind wrote them (dill; Haiku's FlatMapping and jax's
DeviceArray read as dicts and numpy arrays), so a file cannot run code on load.
"""

import os

import jax
import numpy as np
import tensorflow as tf

from mmv import checkpoint as ckpt_lib
from mmv import sharding as shard_lib
from mmv import train_step as step_lib
from mmv.data import pipeline
from mmv.tools import deepmind_names as names
from mmv.tools import safe_pickle

SUPPORTED = {'head': ('fac_relu',), 'video_backbone': tuple(names.VIDEO_ROOTS),
             'audio_backbone': ('audio_resnet50',)}


class IncompatibleReleaseError(ValueError):
  """The released checkpoint does not fit the configured model."""


def load_release(path):
  """(params, state) of a released pickle: {Haiku module path: {name: numpy array}} each."""
  tree = safe_pickle.load(path)
  if not isinstance(tree, dict) or not {'params', 'state'} <= set(tree):
    raise IncompatibleReleaseError(f'{path} is not a dict with `params` and `state`')
  for collection in ('params', 'state'):
    modules = tree[collection]
    if not (isinstance(modules, dict) and all(isinstance(k, str) and isinstance(v, dict)
                                              for k, v in modules.items())):
      raise IncompatibleReleaseError(f'{path}: `{collection}` is not a dict {{Haiku module '
                                     'path: {name: array}}')
  return tree['params'], tree['state']


def release_layout(params, state):
  """The `deepmind_names.Layout` of a release's module paths; IncompatibleReleaseError if none."""
  try:
    return names.release_layout([*params, *state])
  except names.UnknownLayoutError as e:
    raise IncompatibleReleaseError(f'not a released MMV checkpoint: {e}') from e


def check_model_config(c):
  for field, allowed in SUPPORTED.items():
    if c[field] not in allowed:
      raise IncompatibleReleaseError(
          f'the released checkpoints have model.{field} in {allowed}, not {c[field]!r}')


def _flat(tree):
  """{(module, name): array} of a Haiku {module: {name: array}} tree."""
  return {(module, name): np.asarray(v) for module, d in tree.items() for name, v in d.items()}


def convert(params, state, abstract_variables, model_config):
  """{'params', 'batch_stats'} numpy trees shaped like `abstract_variables`, from a release.

  Raises IncompatibleReleaseError listing the model variables the release lacks, the shapes
  that differ and the release arrays nothing uses.
  """
  source = {'params': _flat(params), 'state': _flat(state)}
  layout = release_layout(params, state)
  used, missing, mismatched = set(), [], []

  def take(collection, path, leaf):
    hk_collection, module, name = names.haiku_variable(collection, path, model_config, layout)
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

  converted = {
      collection: jax.tree_util.tree_map_with_path(
          lambda p, leaf, c=collection: take(c, [k.key for k in p], leaf),
          abstract_variables[collection])
      for collection in ('params', 'batch_stats')}
  unused = sorted(f'{m}:{n}' for c, d in source.items() for m, n in d
                  if not _consumed(c, m, n, used, layout))
  if missing or mismatched or unused:
    lines = ['the released checkpoint does not fit the model of the config:']
    for title, items in (('missing', missing), ('other shape', mismatched),
                         ('unused', unused)):
      if items:
        lines.append(f'  {title} ({len(items)}): ' + '; '.join(items[:6]))
    if any('Conv2d_1a_7x7' in m for m in mismatched):
      lines.append('  (the released S3D-G has the space-to-depth stem: '
                   'model.space_to_depth=True)')
    if any('embed:' in m for m in mismatched):
      lines.append('  (the word embedding has one row per id: the vocabulary must be the '
                   'released one)')
    raise IncompatibleReleaseError('\n'.join(lines))
  return converted


def _consumed(collection, module, name, used, layout):
  """Whether a release array is used, part of a used moving average, or a known-unused head."""
  if (collection, module, name) in used:
    return True
  if collection == 'state' and name in ('hidden', 'counter'):
    return (collection, module, 'average') in used
  return names.is_unused_head(module, layout)


def import_release(path, config, out_dir):
  """Converts the release at `path` for `config` into step 0 of `out_dir`/checkpoints."""
  # Checked before the minute of loading and converting; nothing is created yet.
  directory = os.path.join(out_dir, 'checkpoints')
  if steps := ckpt_lib.existing_steps(directory):
    raise FileExistsError(f'{os.path.abspath(directory)} already holds checkpoints (steps '
                          f'{steps}); give another OUT_DIR')
  check_model_config(config.model)
  vocab = pipeline.vocab_path(config.data)
  if not tf.io.gfile.exists(vocab):  # The text embedding has one row per word of it.
    raise FileNotFoundError(f'no vocabulary {vocab!r} (data.data_dir/data.vocab of the config): '
                            'the released text embedding is copied row by row onto it; pass '
                            '--config.data.data_dir=DIR of a dataset with the released vocabulary')
  params, state = load_release(path)
  release_layout(params, state)  # A file of another layout, told before building the model.
  model = step_lib.create_model(config)
  tx = step_lib.create_optimizer(config)
  abstract = step_lib.abstract_train_state(config, model, tx, shard_lib.make_mesh(config.mesh))
  variables = convert(params, state, {'params': abstract.params,
                                      'batch_stats': abstract.batch_stats}, config.model)
  # Host arrays: orbax writes them in seconds, where the first save of the same state as
  # device arrays took a minute on a 2-core CPU; restoring puts them onto the shardings the
  # reader asks for.
  train_state = step_lib.TrainState(
      step=np.zeros((), np.int32), params=variables['params'],
      batch_stats=variables['batch_stats'],
      opt_state=jax.device_get(jax.jit(tx.init)(variables['params'])))
  checkpointer = ckpt_lib.Checkpointer(directory)
  checkpointer.save(0, train_state, signature=ckpt_lib.variable_signature(variables),
                    extra={'imported_from': os.path.abspath(path)})
  checkpointer.wait_until_finished()
  checkpointer.close()
  return {'params': sum(x.size for x in jax.tree.leaves(variables['params'])),
          'batch_stats': sum(x.size for x in jax.tree.leaves(variables['batch_stats']))}
