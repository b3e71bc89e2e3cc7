"""S3D-G, the video backbone of MMV (Xie et al. 2018, as MMV uses it): [B, T, H, W, 3] → [B, 1024].

`deflated`: its image mode (`mmv.models.image_mode`), [B, H, W, 3] → [B, 1024]: 2D kernels
(a temporal-only 3x1x1 unit becomes 1x1), no temporal pooling, self-gating over space, and the
space-to-depth stem over space only (its 12 channels (dh, dw, c)).

Layer names follow the reference (Conv2d_1a_7x7, Mixed_3b, Branch_1_Conv2d_0b_3x3, ...) so that
`mmv.tools.import_deepmind` can map the released Haiku checkpoint by name.
"""

import functools

import flax.linen as nn
import jax.numpy as jnp

from mmv.models import image_mode
from mmv.models.channels import scaled

# Output channels of the inception blocks: (branch 0, branch 1 1x1, branch 1 3x3, branch 2 1x1,
# branch 2 3x3, branch 3), in network order.
INCEPTION_WIDTHS = (
    ('Mixed_3b', (64, 96, 128, 16, 32, 32)),
    ('Mixed_3c', (128, 128, 192, 32, 96, 64)),
    ('Mixed_4b', (192, 96, 208, 16, 48, 64)),
    ('Mixed_4c', (160, 112, 224, 24, 64, 64)),
    ('Mixed_4d', (128, 128, 256, 24, 64, 64)),
    ('Mixed_4e', (112, 144, 288, 32, 64, 64)),
    ('Mixed_4f', (256, 160, 320, 32, 128, 128)),
    ('Mixed_5b', (256, 160, 320, 32, 128, 128)),
    ('Mixed_5c', (384, 192, 384, 48, 128, 128)),
)
# A max pool (window, strides) precedes these blocks.
POOL_BEFORE = {'Mixed_3b': ((1, 3, 3), (1, 2, 2)), 'Mixed_4b': ((3, 3, 3), (2, 2, 2)),
               'Mixed_5b': ((2, 2, 2), (2, 2, 2))}


def space_to_depth(video):
  """[B, T, H, W, C] → [B, T/2, H/2, W/2, 8C], channels ordered (dt, dh, dw, c).

  The released S3D-G checkpoint was trained on this layout (it is cheaper on TPUs); its stem is a
  (2, 4, 4) stride-1 convolution over the 24 channels.
  """
  b, t, h, w, c = video.shape
  x = video.reshape(b, t // 2, 2, h // 2, 2, w // 2, 2, c)
  x = x.transpose(0, 1, 3, 5, 2, 4, 6, 7)
  return x.reshape(b, t // 2, h // 2, w // 2, 8 * c)


def space_to_depth_image(image):
  """[B, H, W, C] → [B, H/2, W/2, 4C], channels ordered (dh, dw, c): `space_to_depth` of one
  frame without the time pairs."""
  b, h, w, c = image.shape
  x = image.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h // 2, w // 2, 4 * c)


def max_pool(x, window, strides, deflated=False):
  return nn.max_pool(x, image_mode.spatial(window, deflated),
                     image_mode.spatial(strides, deflated), padding='SAME')


class SelfGating(nn.Module):
  """x · sigmoid(Dense(mean of x over T, H, W)): channel gates from the whole clip (from the
  image over H, W in image mode)."""
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    context = jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))
    gates = nn.sigmoid(nn.Dense(x.shape[-1], dtype=self.dtype, name='dense')(context))
    return x * gates.reshape(gates.shape[:1] + (1,) * (x.ndim - 2) + gates.shape[1:])


class Unit3D(nn.Module):
  """Conv → BN → ReLU; `separable`: spatial (1,k,k) then temporal (k,1,1), each with BN + ReLU;
  then optional self-gating. Convolutions have no bias (BN follows). `deflated`: the same
  units with 2D kernels (the time axis dropped)."""
  features: int
  kernel: tuple = (1, 1, 1)
  strides: tuple = (1, 1, 1)
  separable: bool = False
  gating: bool = False
  deflated: bool = False
  bn_decay: float = 0.9
  bn_eps: float = 1e-5
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    (kt, kh, kw), (st, sh, sw) = self.kernel, self.strides
    if self.separable:
      convs = (((1, kh, kw), (1, sh, sw)), ((kt, 1, 1), (st, 1, 1)))
    else:
      convs = ((self.kernel, self.strides),)
    for i, (kernel, strides) in enumerate(convs):
      kernel, strides = (image_mode.spatial(v, self.deflated) for v in (kernel, strides))
      x = nn.Conv(self.features, kernel, strides, padding='SAME', use_bias=False,
                  dtype=self.dtype, name=f'conv_{i}')(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_decay,
                       epsilon=self.bn_eps, dtype=self.dtype, name=f'bn_{i}')(x)
      x = nn.relu(x)
    if self.gating:
      x = SelfGating(self.dtype, name='self_gating')(x)
    return x


class InceptionBlock(nn.Module):
  """Four branches concatenated: 1x1; 1x1 → sep 3x3; 1x1 → sep 3x3; max pool 3x3x3 → 1x1.

  Self-gating is on the last unit of each branch.
  """
  widths: tuple
  bn_decay: float = 0.9
  bn_eps: float = 1e-5
  dtype: jnp.dtype = jnp.float32
  deflated: bool = False

  @nn.compact
  def __call__(self, x, train):
    w = self.widths
    unit = functools.partial(Unit3D, bn_decay=self.bn_decay, bn_eps=self.bn_eps,
                             dtype=self.dtype, deflated=self.deflated)
    sep3 = dict(kernel=(3, 3, 3), separable=True, gating=True)
    b0 = unit(w[0], gating=True, name='Branch_0_Conv2d_0a_1x1')(x, train)
    b1 = unit(w[1], name='Branch_1_Conv2d_0a_1x1')(x, train)
    b1 = unit(w[2], **sep3, name='Branch_1_Conv2d_0b_3x3')(b1, train)
    b2 = unit(w[3], name='Branch_2_Conv2d_0a_1x1')(x, train)
    b2 = unit(w[4], **sep3, name='Branch_2_Conv2d_0b_3x3')(b2, train)
    b3 = max_pool(x, (3, 3, 3), (1, 1, 1), self.deflated)
    b3 = unit(w[5], gating=True, name='Branch_3_Conv2d_0b_1x1')(b3, train)
    return jnp.concatenate([b0, b1, b2, b3], axis=-1)


class S3DG(nn.Module):
  """S3D-G; `width_multiplier` scales every layer's channels (1 = the paper's network).

  Temporal kernels are 1 until Conv2d_2c_3x3 and 3 from there on, where self-gating also starts.
  `space_to_depth` rearranges the input first and uses the (2, 4, 4) stride-1 stem of the released
  checkpoint instead of the 7x7x7 stride-2 one; the output shapes are the same.
  `deflated`: the image mode (see the module doc).
  """
  width_multiplier: float = 1.0
  space_to_depth: bool = False
  remat: bool = False
  bn_decay: float = 0.9
  bn_eps: float = 1e-5
  dtype: jnp.dtype = jnp.float32
  deflated: bool = False

  @nn.compact
  def __call__(self, video, train):
    ch = functools.partial(scaled, multiplier=self.width_multiplier)
    d = self.deflated
    common = dict(bn_decay=self.bn_decay, bn_eps=self.bn_eps, dtype=self.dtype, deflated=d)
    x, frames = image_mode.frames_in(video.astype(self.dtype), d)
    if self.space_to_depth:
      x = space_to_depth_image(x) if d else space_to_depth(x)
      stem = dict(kernel=(2, 4, 4), strides=(1, 1, 1))
    else:
      stem = dict(kernel=(7, 7, 7), strides=(2, 2, 2))
    x = Unit3D(ch(64), **stem, **common, name='Conv2d_1a_7x7')(x, train)
    x = max_pool(x, (1, 3, 3), (1, 2, 2), d)
    x = Unit3D(ch(64), **common, name='Conv2d_2b_1x1')(x, train)
    x = Unit3D(ch(192), (3, 3, 3), separable=True, gating=True, **common,
               name='Conv2d_2c_3x3')(x, train)
    # Static argnums count `self` as 0: `train` (argument 2) selects the BN mode at trace time.
    block = nn.remat(InceptionBlock, static_argnums=(2,)) if self.remat else InceptionBlock
    for name, widths in INCEPTION_WIDTHS:
      if name in POOL_BEFORE:
        x = max_pool(x, *POOL_BEFORE[name], d)
      x = block(tuple(ch(c) for c in widths), **common, name=name)(x, train)
    return image_mode.frames_out(image_mode.pooled(x), frames)

  @property
  def output_dim(self):
    """Channels of Mixed_5c: the four branch outputs."""
    widths = INCEPTION_WIDTHS[-1][1]
    return sum(scaled(widths[i], self.width_multiplier) for i in (0, 2, 4, 5))
