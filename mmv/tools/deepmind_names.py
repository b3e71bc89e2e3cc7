"""Where each variable of this framework's model is in DeepMind's released MMV checkpoints.

The released files (DeepMind's Haiku code in deepmind-research/mmv) hold `params` and `state`,
each {Haiku module path: {name: array}}. Haiku names a module built in its parent's `__call__`
`parent/name`, one built in its parent's `__init__` `parent/~/name`, and one built in another
method `parent/~method/name`; an unnamed module takes its snake-cased class name, numbered `_1`,
`_2`, ... when repeated in one scope.

The release's `config.py` names the model `text_audio_video`, so every path starts with R =
`text_audio_video/` (`audio_text_video_model/`, the class's default name, is accepted too);
`AudioTextVideoEmbedding` builds its projection heads in `_get_pair_embedding_heads`, so they
sit under H = R `~_get_pair_embedding_heads/`. Both are read from the file (`release_layout`).

  this framework (Flax)                        released (Haiku)
  video_backbone (s3d_g)                       R visual_module/~/S3D
    U/conv_0, U/conv_1                           U/~/conv3_d, U/~/conv3_d_1          w
    U/bn_0, U/bn_1                               U/BN, U/BN_1
    U/self_gating/dense                          U/self_gating                       w, b
      (U = Conv2d_1a_7x7, ..., Mixed_5c/Branch_3_Conv2d_0b_1x1)
  video_backbone/resnet (tsm_resnet50, x2)     R visual_module/~/TSMResNetV2
    initial_conv                                 tsm_resnet_stem
    unit_U_block_B/conv_k, shortcut_conv         tsm_resnet_unit_U/block_B/conv_k, shortcut_conv
    unit_U_block_B/bn_0, bn_1, bn_2              tsm_resnet_unit_U/block_B/BN, BN_1, BN_2
    final_bn                                     BN
  audio_backbone (audio_resnet50)              R audio_module/~/res_net_v2
    initial_conv                                 ~/initial_conv
    unit_U_block_B/conv_k, shortcut_conv         ~/block_group_U/block_B/~/conv_k, shortcut_conv
    unit_U_block_B/bn_0, bn_1, bn_2              ~/block_group_U/block_B/BN, BN_1, BN_2
    final_bn                                     BN
  text_backbone/word_embeddings                R text_module/~/embed                 embeddings
  text_backbone/conv                           R text_module/~/text_conv1            w, b
  heads (fac_relu)
    video_va_proj/Dense_0, BatchNorm_0         H vid2audio_embd/final_projection_inner, BN
    video_va_proj/Dense_1, BatchNorm_1         H vid2audio_embd/final_projection, BN_1
    va_to_vat/Dense_0, BatchNorm_0             H vis_embd/final_projection, BN
    audio_proj/Dense_0                         H audio_embd/final_projection
    text_proj/Dense_0                          H txt_embd/final_projection

e.g. `text_audio_video/~_get_pair_embedding_heads/vid2audio_embd/__cross_replica_batch_norm_1`.
Leaves: kernel ↔ w, bias ↔ b (offset for BN), scale ↔ scale, embedding ↔ embeddings. BN is the
name Haiku gives the reference's normaliser class (`__cross_replica_batch_norm`, or
`__batch_norm` without cross-replica BN); it is read from the file. BN scale and offset are
[1, ..., C] there and [C] here. BN statistics are Haiku state: each of `BN/~/mean_ema` and
`BN/~/var_ema` keeps `hidden`, `counter` and the debiased `average`; `average` is what Haiku
normalises with at evaluation, so it becomes Flax's `mean` / `var` (the other two are consumed).

`txt2audio_embd` and `audio2txt_embd`, heads the reference builds for text→audio and audio→text
but never trains with the MMV losses of the FAC graphs, have no counterpart and are dropped.
"""

import re
from typing import NamedTuple

ROOTS = ('text_audio_video', 'audio_text_video_model')  # The release's config.py; the default.
HEADS_SCOPE = '~_get_pair_embedding_heads'
UNUSED_HEADS = ('txt2audio_embd', 'audio2txt_embd')
VIDEO_ROOTS = {'s3d_g': 'visual_module/~/S3D',
               'tsm_resnet50': 'visual_module/~/TSMResNetV2',
               'tsm_resnet50x2': 'visual_module/~/TSMResNetV2'}
AUDIO_ROOT = 'audio_module/~/res_net_v2'
HEADS = {  # Flax module in `heads` → Haiku module under the heads' scope (fac_relu).
    'video_va_proj/Dense_0': 'vid2audio_embd/final_projection_inner',
    'video_va_proj/BatchNorm_0': 'vid2audio_embd/{bn}',
    'video_va_proj/Dense_1': 'vid2audio_embd/final_projection',
    'video_va_proj/BatchNorm_1': 'vid2audio_embd/{bn}_1',
    'va_to_vat/Dense_0': 'vis_embd/final_projection',
    'va_to_vat/BatchNorm_0': 'vis_embd/{bn}',
    'audio_proj/Dense_0': 'audio_embd/final_projection',
    'text_proj/Dense_0': 'txt_embd/final_projection',
}
_BN_NAME = re.compile(r'_*(?:cross_replica_)?batch_norm')
_BLOCK = re.compile(r'unit_(\d+)_block_(\d+)')
_NUMBERED = re.compile(r'(conv|bn)_(\d+)')


class UnmappedVariableError(ValueError):
  """A variable of the model has no rule (a model this importer does not know)."""


class UnknownLayoutError(ValueError):
  """The checkpoint's module paths are not laid out as the release code lays them out."""


class Layout(NamedTuple):
  """How a checkpoint names the model's modules, read from its module paths."""
  root: str  # 'text_audio_video/'
  heads: str  # 'text_audio_video/~_get_pair_embedding_heads/'
  bn: str  # '__cross_replica_batch_norm'


def release_layout(module_paths):
  """The Layout of a checkpoint whose Haiku modules are `module_paths`."""
  module_paths = list(module_paths)
  roots = sorted({path.split('/', 1)[0] for path in module_paths})
  if len(roots) != 1 or roots[0] not in ROOTS:
    raise UnknownLayoutError(
        f'expected every module of the checkpoint under one of {", ".join(ROOTS)} (the model '
        f'name of the release\'s config.py; the class default), found {roots[:6]}')
  heads = f'{roots[0]}/{HEADS_SCOPE}/'
  if not any(path.startswith(heads) for path in module_paths):
    raise UnknownLayoutError(
        f'expected the projection heads under {heads} (AudioTextVideoEmbedding builds them in '
        f'its method _get_pair_embedding_heads), found none there')
  return Layout(root=f'{roots[0]}/', heads=heads, bn=batch_norm_name(module_paths))


def batch_norm_name(module_paths):
  """The name Haiku gave the BatchNorm modules, found in `module_paths` of a checkpoint."""
  names = {re.sub(r'_\d+$', '', part) for path in module_paths for part in path.split('/')}
  names = {n for n in names if _BN_NAME.fullmatch(n)}
  if len(names) != 1:
    raise UnknownLayoutError(f'expected one BatchNorm module name in the checkpoint, found '
                             f'{names}')
  return names.pop()


def is_unused_head(module, layout):
  """Whether `module` belongs to a head the reference builds but never trains."""
  return any(module.startswith(f'{layout.heads}{head}/') for head in UNUSED_HEADS)


def _numbered(name, bn):
  """conv_k / bn_k of a unit or block → the Haiku name (`_k` suffix from the second on)."""
  kind, k = _NUMBERED.fullmatch(name).groups()
  suffix = '' if k == '0' else f'_{k}'
  return f'conv3_d{suffix}' if kind == 'conv' else f'{bn}{suffix}'


def _s3d(path, bn):
  *unit, last = path
  unit = '/'.join(unit)
  if last == 'dense':  # .../self_gating/dense
    return unit
  if last.startswith('conv'):
    return f'{unit}/~/{_numbered(last, bn)}'
  return f'{unit}/{_numbered(last, bn)}'


def resnet_module(path, bn, tsm):
  """ResNet v2 trunk: TSM's (names from its __call__) or the audio one's (from __init__)."""
  if path == ['initial_conv']:
    return 'tsm_resnet_stem' if tsm else '~/initial_conv'
  if path == ['final_bn']:
    return bn
  block, layer = path
  unit, index = _BLOCK.fullmatch(block).groups()
  if tsm:
    block = f'tsm_resnet_unit_{unit}/block_{index}'
  else:
    block = f'~/block_group_{unit}/block_{index}'
  if layer.startswith('bn_'):
    k = layer[len('bn_'):]
    return f'{block}/{bn}' + ('' if k == '0' else f'_{k}')
  return f'{block}/{layer}' if tsm else f'{block}/~/{layer}'


def haiku_module(path, model_config, layout):
  """The Haiku module path of the Flax module `path` (a list of names)."""
  top, rest = path[0], path[1:]
  if top == 'heads':
    return layout.heads + HEADS['/'.join(rest)].format(bn=layout.bn)
  return layout.root + _trunk_module(top, rest, model_config, layout.bn)


def _trunk_module(top, rest, model_config, bn):
  """The Haiku path, below the root, of the backbones' module `top`/`rest`."""
  if top == 'video_backbone':
    root = VIDEO_ROOTS[model_config.video_backbone]
    if model_config.video_backbone == 's3d_g':
      return f'{root}/{_s3d(rest, bn)}'
    return f'{root}/{resnet_module(rest[1:], bn, tsm=True)}'  # rest[0] is `resnet`.
  if top == 'audio_backbone':
    return f'{AUDIO_ROOT}/{resnet_module(rest, bn, tsm=False)}'
  if top == 'text_backbone':
    return {'word_embeddings': 'text_module/~/embed', 'conv': 'text_module/~/text_conv1'}[rest[0]]
  raise UnmappedVariableError(f'no rule for {"/".join([top, *rest])}')


def haiku_variable(collection, path, model_config, layout):
  """(Haiku collection, module path, name) holding the Flax variable `collection`/`path`."""
  *module, leaf = path
  try:
    hk_module = haiku_module(module, model_config, layout)
  except (KeyError, AttributeError, ValueError, IndexError) as e:
    raise UnmappedVariableError(f'no rule for {collection}/{"/".join(path)}') from e
  is_bn = hk_module.rsplit('/', 1)[-1].startswith(layout.bn)
  if collection == 'batch_stats':
    return 'state', f'{hk_module}/~/{leaf}_ema', 'average'
  names = {'kernel': 'w', 'bias': 'offset' if is_bn else 'b', 'scale': 'scale',
           'embedding': 'embeddings'}
  return 'params', hk_module, names[leaf]
