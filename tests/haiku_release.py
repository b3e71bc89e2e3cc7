"""Synthetic stand-ins for DeepMind's released MMV checkpoints, for the importer's tests.

Written from the reference Haiku code's module structure (deepmind-research/mmv: mm_embeddings,
s3d, tsm_resnet, resnet, normalization) independently of `mmv.tools.deepmind_names`: each
module's path is built the way Haiku names it (`parent/name` when built in the parent's
`__call__`, `parent/~/name` when built in its `__init__`, `_1`, `_2` for repeats), with the
shapes Haiku gives (BN scale, offset and moving averages are [1, ..., C]).
"""

import numpy as np

P = 'audio_text_video_model/'
BN = '__cross_replica_batch_norm'  # Haiku's name for the reference's _CrossReplicaBatchNorm.
S3D_MIXED = (  # DESIGN.md §4.
    ('Mixed_3b', (64, 96, 128, 16, 32, 32)), ('Mixed_3c', (128, 128, 192, 32, 96, 64)),
    ('Mixed_4b', (192, 96, 208, 16, 48, 64)), ('Mixed_4c', (160, 112, 224, 24, 64, 64)),
    ('Mixed_4d', (128, 128, 256, 24, 64, 64)), ('Mixed_4e', (112, 144, 288, 32, 64, 64)),
    ('Mixed_4f', (256, 160, 320, 32, 128, 128)), ('Mixed_5b', (256, 160, 320, 32, 128, 128)),
    ('Mixed_5c', (384, 192, 384, 48, 128, 128)))


class _Tree:
  """{'params': {module: {name: shape}}, 'state': {...}} being filled in."""

  def __init__(self, mult):
    self.shapes = {'params': {}, 'state': {}}
    self.mult = mult

  def ch(self, c):
    return max(1, int(round(c * self.mult)))

  def param(self, module, name, shape):
    self.shapes['params'].setdefault(module, {})[name] = tuple(shape)

  def bn(self, module, channels, ndim):
    shape = (1,) * (ndim - 1) + (channels,)
    self.param(module, 'scale', shape)
    self.param(module, 'offset', shape)
    for ema in ('mean_ema', 'var_ema'):
      self.shapes['state'][f'{module}/~/{ema}'] = {
          'average': shape, 'hidden': shape, 'counter': ()}


def _s3d(t, space_to_depth):
  root = P + 'visual_module/~/S3D/'

  def unit(name, cin, cout, kernel=(1, 1, 1), separable=False, gating=False):
    k = kernel[0]
    convs = [(1, kernel[1], kernel[2]), (k, 1, 1)] if separable else [kernel]
    for i, shape in enumerate(convs):
      suffix = '_1' if i else ''
      t.param(f'{root}{name}/~/conv3_d{suffix}', 'w', shape + (cin, cout))
      t.bn(f'{root}{name}/{BN}{suffix}', cout, 5)
      cin = cout
    if gating:
      t.param(f'{root}{name}/self_gating', 'w', (cout, cout))
      t.param(f'{root}{name}/self_gating', 'b', (cout,))
    return cout

  if space_to_depth:
    c = unit('Conv2d_1a_7x7', 24, t.ch(64), (2, 4, 4))
  else:
    c = unit('Conv2d_1a_7x7', 3, t.ch(64), (7, 7, 7))
  c = unit('Conv2d_2b_1x1', c, t.ch(64))
  c = unit('Conv2d_2c_3x3', c, t.ch(192), (3, 3, 3), separable=True, gating=True)
  for mixed, widths in S3D_MIXED:
    w = [t.ch(x) for x in widths]
    unit(f'{mixed}/Branch_0_Conv2d_0a_1x1', c, w[0], gating=True)
    unit(f'{mixed}/Branch_1_Conv2d_0a_1x1', c, w[1])
    unit(f'{mixed}/Branch_1_Conv2d_0b_3x3', w[1], w[2], (3, 3, 3), True, True)
    unit(f'{mixed}/Branch_2_Conv2d_0a_1x1', c, w[3])
    unit(f'{mixed}/Branch_2_Conv2d_0b_3x3', w[3], w[4], (3, 3, 3), True, True)
    unit(f'{mixed}/Branch_3_Conv2d_0b_1x1', c, w[5], gating=True)
    c = w[0] + w[2] + w[4] + w[5]
  return c


def _resnet50(t, root, stem, block_path, conv_sep, in_channels, width):
  """The trunk shared by TSMResNetV2 and the audio ResNetV2 (bottleneck, all projections)."""
  c = t.ch(64 * width)
  t.param(root + stem, 'w', (7, 7, in_channels, c))
  for u, (channels, blocks) in enumerate(zip((256, 512, 1024, 2048), (3, 4, 6, 3))):
    out = t.ch(channels * width)
    inner = out // 4
    for b in range(blocks):
      blk = root + block_path.format(u=u, b=b)
      t.bn(f'{blk}/{BN}', c, 4)
      if b == 0:
        t.param(f'{blk}{conv_sep}shortcut_conv', 'w', (1, 1, c, out))
      t.param(f'{blk}{conv_sep}conv_0', 'w', (1, 1, c, inner))
      t.bn(f'{blk}/{BN}_1', inner, 4)
      t.param(f'{blk}{conv_sep}conv_1', 'w', (3, 3, inner, inner))
      t.bn(f'{blk}/{BN}_2', inner, 4)
      t.param(f'{blk}{conv_sep}conv_2', 'w', (1, 1, inner, out))
      c = out
  t.bn(root + BN, c, 4)
  return c


def _linear(t, module, cin, cout, bias=True):
  t.param(module, 'w', (cin, cout))
  if bias:
    t.param(module, 'b', (cout,))


def release_shapes(video_backbone, *, mult=1.0, space_to_depth=True, vocab_size=65536,
                   word_dim=300, text_hidden=2048, va_dim=512, vat_dim=256):
  """Shapes of a released checkpoint (fac_relu heads, audio ResNet-50) at width `mult`."""
  t = _Tree(mult)
  if video_backbone == 's3d_g':
    video_dim = _s3d(t, space_to_depth)
  else:
    video_dim = _resnet50(t, P + 'visual_module/~/TSMResNetV2/', 'tsm_resnet_stem',
                          'tsm_resnet_unit_{u}/block_{b}', '/', 3,
                          2 if video_backbone == 'tsm_resnet50x2' else 1)
  audio_dim = _resnet50(t, P + 'audio_module/~/res_net_v2/', '~/initial_conv',
                        '~/block_group_{u}/block_{b}', '/~/', 1, 1)
  t.param(P + 'text_module/~/embed', 'embeddings', (vocab_size, word_dim))
  t.param(P + 'text_module/~/text_conv1', 'w', (1, word_dim, text_hidden))
  t.param(P + 'text_module/~/text_conv1', 'b', (text_hidden,))
  _linear(t, P + 'vid2audio_embd/final_projection_inner', video_dim, va_dim)
  t.bn(P + f'vid2audio_embd/{BN}', va_dim, 2)
  _linear(t, P + 'vid2audio_embd/final_projection', va_dim, va_dim, bias=False)
  t.bn(P + f'vid2audio_embd/{BN}_1', va_dim, 2)
  _linear(t, P + 'vis_embd/final_projection', va_dim, vat_dim)
  t.bn(P + f'vis_embd/{BN}', vat_dim, 2)
  _linear(t, P + 'audio_embd/final_projection', audio_dim, va_dim)
  _linear(t, P + 'txt_embd/final_projection', text_hidden, vat_dim)
  # Built by the reference, never trained by the FAC graphs' losses.
  _linear(t, P + 'txt2audio_embd/final_projection', text_hidden, va_dim)
  _linear(t, P + 'audio2txt_embd/final_projection', audio_dim, va_dim)
  return t.shapes


def zeros_like_shapes(shapes):
  """Arrays of the shapes without memory (broadcast views): enough to check a mapping."""
  return {collection: {module: {name: np.broadcast_to(np.zeros((), np.int32 if name == 'counter'
                                                               else np.float32), shape)
                                for name, shape in d.items()}
                       for module, d in tree.items()}
          for collection, tree in shapes.items()}


def random_like_shapes(shapes, seed=0):
  """Distinct random arrays of the shapes, each recognisable after conversion, scaled like a
  trained network's (unit-variance activations, positive BN variances) so a forward pass of
  the imported model stays finite."""
  rng = np.random.default_rng(seed)

  def value(module, name, shape):
    if name == 'counter':
      return np.int32(7)
    x = rng.standard_normal(shape)
    if name == 'w':
      x /= np.sqrt(np.prod(shape[:-1]))
    elif module.endswith('var_ema'):
      x = 1.0 + 0.5 * rng.random(shape)
    elif name == 'scale':
      x = 1.0 + 0.1 * x
    elif name != 'embeddings':
      x *= 0.1
    return x.astype(np.float32)

  return {collection: {module: {name: value(module, name, shape) for name, shape in d.items()}
                       for module, d in tree.items()}
          for collection, tree in shapes.items()}
