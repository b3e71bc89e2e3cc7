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

import tensorflow as tf

from mmv import checkpoint as ckpt_lib
from mmv import sharding as shard_lib
from mmv import train_step as step_lib
from mmv.data import pipeline
from mmv.tools import deepmind_names as names
from mmv.tools import haiku_release
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
  problem = haiku_release.layout_problem(tree)
  if problem:
    raise IncompatibleReleaseError(f'{path}: {problem}')
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


def convert(params, state, abstract_variables, model_config):
  """{'params', 'batch_stats'} numpy trees shaped like `abstract_variables`, from a release.

  Raises IncompatibleReleaseError listing the model variables the release lacks, the shapes
  that differ and the release arrays nothing uses.
  """
  layout = release_layout(params, state)
  converted, problems = haiku_release.convert(
      params, state, abstract_variables,
      lambda collection, path: names.haiku_variable(collection, path, model_config, layout),
      lambda module: names.is_unused_head(module, layout))
  if problems:
    lines = ['the released checkpoint does not fit the model of the config:']
    lines += haiku_release.problem_lines(problems)
    mismatched = dict(problems).get('other shape', [])
    if any('Conv2d_1a_7x7' in m for m in mismatched):
      lines.append('  (the released S3D-G has the space-to-depth stem: '
                   'model.space_to_depth=True)')
    if any('embed:' in m for m in mismatched):
      lines.append('  (the word embedding has one row per id: the vocabulary must be the '
                   'released one)')
    raise IncompatibleReleaseError('\n'.join(lines))
  return converted


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
  return haiku_release.save_step_zero(directory, variables, tx, path)
