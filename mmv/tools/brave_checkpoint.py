"""DeepMind's released BraVe checkpoints (google-deepmind/brave README: `.npy` files) as variables
of mmv's BraVe model (mmv/models/brave.py).

A release is `np.save` of a dict {params, state, config} (brave/evaluate_video_embeddings.py
reads it with `np.load(path, allow_pickle=True).item()`): `params` and `state` are Haiku's
{module path: {name: array}}, `config` the keyword arguments of `brave.BraveConfig`
(include_video_in_broad_view, include_audio_in_broad_view, tsm_resnet_width_multiplier,
output_dims, ...). It is read here by the allow-list unpickler (`safe_pickle.load_npy_object`),
never by `np.load(allow_pickle=True)`, which would run whatever the pickle names.

Module paths, as Haiku names BraVe's modules (brave/models/brave/brave.py, modules.py,
tsm_resnet.py, resnet.py; recorded by running that code: tests/data/brave_haiku_names.json,
made by tests/data/make_brave_reference.py). Haiku names a module built in its parent's
`__call__` `parent/name` and one built in its parent's `__init__` `parent/~/name`; repeated
unnamed modules are numbered `_1`, `_2`, ...

  mmv (Flax)                                   release (Haiku)
  narrow_video/resnet/...  (TSM-ResNet50)      narrow_video_embedding/TSMResNetV2/...
  broad_video/resnet/...   (TSM-ResNet50)      broad_video_embedding/TSMResNetV2/...
    initial_conv                                 tsm_resnet_stem
    unit_U_block_B/conv_k, shortcut_conv         tsm_resnet_unit_U/block_B/conv_k, shortcut_conv
    unit_U_block_B/bn_0, bn_1, bn_2              tsm_resnet_unit_U/block_B/batch_norm, _1, _2
    final_bn                                     batch_norm
  broad_audio/...          (ResNet-50)         broad_audio_embedding/res_net_v2/...
    initial_conv                                 ~/initial_conv
    unit_U_block_B/conv_k, shortcut_conv         ~/block_group_U/block_B/~/conv_k, shortcut_conv
    unit_U_block_B/bn_k, final_bn                ~/block_group_U/block_B/batch_norm(_k), batch_norm
  head/projector/dense_0, bn_0, dense_1, bn_1  shared_project/projector/linear, batch_norm,
                                                 linear_1, batch_norm_1
  head/predictor/dense_0, bn_0, dense_1        shared_project/predictor/linear, batch_norm, linear_1

Leaves: kernel ↔ w, bias ↔ b (offset for BN), scale ↔ scale; BN scale/offset are [1, ..., C]
there and [C] here. BN statistics are Haiku state `BN/~/mean_ema` and `BN/~/var_ema`, each with
`hidden`, `counter` and the debiased `average`, which Haiku normalises with at evaluation and so
becomes Flax's `mean` / `var`.

The init transform of brave.py builds the shared head once per cross-view function it calls, so
a release also holds `shared_project_1`, ... (one per extra call); every apply function builds
`shared_project` alone, so those copies are never read and are dropped here.
"""

import os
import re

from mmv import checkpoint as ckpt_lib
from mmv import sharding as shard_lib
from mmv import train_step as step_lib
from mmv.tools import deepmind_names
from mmv.tools import haiku_release
from mmv.tools import safe_pickle

BN = 'batch_norm'  # hk.BatchNorm's default name (modules.py `_default_normalize_fn`).
VIDEO_ROOTS = {'narrow_video': 'narrow_video_embedding/TSMResNetV2',
               'broad_video': 'broad_video_embedding/TSMResNetV2'}
AUDIO_ROOT = 'broad_audio_embedding/res_net_v2'
HEAD_ROOT = 'shared_project'
HEAD = {'projector/dense_0': 'projector/linear', 'projector/bn_0': f'projector/{BN}',
        'projector/dense_1': 'projector/linear_1', 'projector/bn_1': f'projector/{BN}_1',
        'predictor/dense_0': 'predictor/linear', 'predictor/bn_0': f'predictor/{BN}',
        'predictor/dense_1': 'predictor/linear_1'}
_UNUSED_HEAD_COPY = re.compile(rf'{HEAD_ROOT}_\d+/')
# brave.BraveConfig fields this importer needs (all of them are in every release's config).
CONFIG_FIELDS = ('include_video_in_broad_view', 'include_audio_in_broad_view',
                 'tsm_resnet_width_multiplier', 'output_dims')


class IncompatibleReleaseError(ValueError):
  """The released checkpoint does not fit the configured model."""


class UnmappedVariableError(ValueError):
  """A variable of the model has no rule (a model this importer does not know)."""


def load_release(path):
  """(params, state, config) of a released BraVe `.npy`, checked for their layout."""
  tree = safe_pickle.load_npy_object(path)
  if not isinstance(tree, dict) or not {'params', 'state', 'config'} <= set(tree):
    raise IncompatibleReleaseError(f'{path} is not a dict with `params`, `state` and `config` '
                                   '(the layout of the BraVe releases)')
  problem = haiku_release.layout_problem(tree)
  if problem:
    raise IncompatibleReleaseError(f'{path}: {problem}')
  config = tree['config']
  if not isinstance(config, dict) or not set(CONFIG_FIELDS) <= set(config):
    raise IncompatibleReleaseError(f'{path}: `config` is not a dict of BraveConfig fields with '
                                   f'{", ".join(CONFIG_FIELDS)}')
  return tree['params'], tree['state'], config


def haiku_module(path):
  """The Haiku module path of the Flax module `path` (a list of names) of mmv's BraVe model."""
  top, rest = path[0], path[1:]
  if top in VIDEO_ROOTS and rest[:1] == ['resnet']:
    return f'{VIDEO_ROOTS[top]}/{deepmind_names.resnet_module(rest[1:], BN, tsm=True)}'
  if top == 'broad_audio':
    return f'{AUDIO_ROOT}/{deepmind_names.resnet_module(rest, BN, tsm=False)}'
  if top == 'head':
    return f'{HEAD_ROOT}/{HEAD["/".join(rest)]}'
  raise KeyError(top)


def haiku_variable(collection, path):
  """(Haiku collection, module path, name) holding the Flax variable `collection`/`path`."""
  *module, leaf = path
  try:
    hk_module = haiku_module(module)
  except (KeyError, ValueError, IndexError, AttributeError) as e:
    raise UnmappedVariableError(f'no rule for {collection}/{"/".join(path)}') from e
  if collection == 'batch_stats':
    return 'state', f'{hk_module}/~/{leaf}_ema', 'average'
  is_bn = re.fullmatch(rf'{BN}(_\d+)?', hk_module.rsplit('/', 1)[-1]) is not None
  return 'params', hk_module, {'kernel': 'w', 'bias': 'offset' if is_bn else 'b',
                               'scale': 'scale'}[leaf]


def check_release_config(release_config, c, model_c):
  """The release's BraveConfig against config.brave (`c`) and config.model (`model_c`)."""
  widths = {'tsm_resnet50': 1, 'tsm_resnet50x2': 2}
  want = {'include_video_in_broad_view': c.broad_video,
          'include_audio_in_broad_view': c.broad_audio,
          'tsm_resnet_width_multiplier': widths.get(model_c.video_backbone,
                                                    model_c.video_backbone),
          'output_dims': c.output_dim}
  differ = [f'{k}={release_config[k]!r} (the config gives {v!r})' for k, v in want.items()
            if release_config[k] != v]
  if model_c.audio_backbone != 'audio_resnet50' and c.broad_audio:
    differ.append(f'audio ResNet-50 (the config gives model.audio_backbone='
                  f'{model_c.audio_backbone!r})')
  if model_c.width_multiplier != 1:
    differ.append(f'full-width backbones (the config gives model.width_multiplier='
                  f'{model_c.width_multiplier})')
  if differ:
    raise IncompatibleReleaseError(
        'the released checkpoint was trained with another BraVe model: ' + '; '.join(differ) +
        ' (brave.broad_video, brave.broad_audio, brave.output_dim, model.video_backbone)')


def convert(params, state, abstract_variables):
  """{'params', 'batch_stats'} numpy trees shaped like `abstract_variables`, from a release.

  Raises IncompatibleReleaseError listing the model variables the release lacks, the shapes that
  differ and the release arrays nothing uses (but the unused head copies).
  """
  converted, problems = haiku_release.convert(
      params, state, abstract_variables, haiku_variable,
      lambda module: bool(_UNUSED_HEAD_COPY.match(module)))
  if problems:
    lines = ['the released BraVe checkpoint does not fit the model of the config:']
    raise IncompatibleReleaseError('\n'.join(lines + haiku_release.problem_lines(problems)))
  return converted


def import_release(path, config, out_dir):
  """Converts the BraVe release at `path` for `config` (method brave) into step 0 of
  `out_dir`/checkpoints, with a fresh optimiser state; returns the counts of what it wrote."""
  if config.get('method') != 'brave':
    raise IncompatibleReleaseError(f'the config trains method {config.get("method")!r}; a BraVe '
                                   'release goes into a BraVe model (configs/brave.py)')
  directory = os.path.join(out_dir, 'checkpoints')
  if steps := ckpt_lib.existing_steps(directory):
    raise FileExistsError(f'{os.path.abspath(directory)} already holds checkpoints (steps '
                          f'{steps}); give another OUT_DIR')
  params, state, release_config = load_release(path)
  check_release_config(release_config, config.brave, config.model)
  model = step_lib.create_model(config)
  tx = step_lib.create_optimizer(config)
  abstract = step_lib.abstract_train_state(config, model, tx, shard_lib.make_mesh(config.mesh))
  variables = convert(params, state, {'params': abstract.params,
                                      'batch_stats': abstract.batch_stats})
  return haiku_release.save_step_zero(directory, variables, tx, path)
