"""R(2+1)D-18 (Tran et al. 2018) as torchvision's `r2plus1d_18` defines it: [B, T, H, W, 3] →
[B, 512], the video backbone of GDT (facebookresearch/GDT model.py builds `r2plus1d_18` from its
src/vmz.py, torchvision's layout, and replaces `fc` by an identity: the features are the global
average pool) and of XDC.

Layout (torchvision models/video/resnet.py: VideoResNet, R2Plus1dStem, BasicBlock, Conv2Plus1D):
- stem: Conv 1x7x7 3→45, stride (1, 2, 2) → BN → ReLU → Conv 3x1x1 45→64 → BN → ReLU, no pool;
- four stages of two BasicBlocks, widths 64, 128, 256, 512; the first block of stages 2-4 has
  stride 2 in time and space and a 1x1x1 conv + BN downsample on its shortcut;
- a BasicBlock: relu(BN(conv1(x))) → BN(conv2(·)) + shortcut → ReLU, where each conv is a
  (2+1)D convolution: 1x3x3 (spatial stride) to M channels → BN → ReLU → 3x1x1 (temporal
  stride). M = floor(N_in·N_out·27 / (9·N_in + 3·N_out)) is computed once per block from the
  block's input and output widths, and the block's second conv reuses it (torchvision's choice;
  the paper computes it per convolution). 31,300,125 parameters without `fc`.

Padding is torchvision's, symmetric (1 for 3-wide kernels, 3 for 7-wide), not 'SAME' (which
pads strided convolutions asymmetrically). Every convolution is bias-free; BN eps 1e-5 and
PyTorch's momentum 0.1 (here `bn_decay` 0.9) are torchvision's defaults.

Module names follow torchvision's state dict (stem, layer{1-4}_{0,1}/conv1/{spatial, mid_bn,
temporal}, bn1, ..., downsample_conv, downsample_bn) so `mmv.tools.torchvision_checkpoint`
maps released weights by rule.

`deflated`: the image mode (`mmv.models.image_mode`), [B, H, W, 3] → [B, 512]: every kernel and
stride loses its time axis (the 3x1x1 temporal convolutions become 1x1, stride 1).
"""

import functools

import flax.linen as nn
import jax.numpy as jnp

from mmv.models import image_mode
from mmv.models.channels import scaled

STAGE_WIDTHS = (64, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 2)
BLOCKS_PER_STAGE = 2
STEM_MID = 45  # torchvision's R2Plus1dStem hard-codes it.


def mid_channels(n_in, n_out):
  """M of a (2+1)D block: the spatio-temporal conv's parameter count, split in two."""
  return (n_in * n_out * 3 * 3 * 3) // (n_in * 3 * 3 + 3 * n_out)


def _pad(kernel):
  return tuple((k // 2, k // 2) for k in kernel)


class _Layers(nn.Module):
  """Bias-free convolution and BatchNorm with the backbone's options."""
  bn_decay: float = 0.9
  bn_eps: float = 1e-5
  dtype: jnp.dtype = jnp.float32
  deflated: bool = False

  def conv(self, features, kernel, strides, name):
    kernel, strides = (image_mode.spatial(v, self.deflated) for v in (kernel, strides))
    return nn.Conv(features, kernel, strides, padding=_pad(kernel), use_bias=False,
                   dtype=self.dtype, name=name)

  def bn(self, x, train, name):
    return nn.BatchNorm(use_running_average=not train, momentum=self.bn_decay,
                        epsilon=self.bn_eps, dtype=self.dtype, name=name)(x)


class Conv2Plus1D(_Layers):
  """1x3x3 (stride 1, s, s) → BN → ReLU → 3x1x1 (stride s, 1, 1)."""
  features: int = 64
  mid: int = 64
  stride: int = 1

  @nn.compact
  def __call__(self, x, train):
    x = self.conv(self.mid, (1, 3, 3), (1, self.stride, self.stride), 'spatial')(x)
    x = nn.relu(self.bn(x, train, 'mid_bn'))
    return self.conv(self.features, (3, 1, 1), (self.stride, 1, 1), 'temporal')(x)


class BasicBlock(_Layers):
  features: int = 64
  stride: int = 1

  @nn.compact
  def __call__(self, x, train):
    n_in = x.shape[-1]
    opts = dict(bn_decay=self.bn_decay, bn_eps=self.bn_eps, dtype=self.dtype,
                deflated=self.deflated)
    mid = mid_channels(n_in, self.features)
    r = Conv2Plus1D(features=self.features, mid=mid, stride=self.stride, name='conv1',
                    **opts)(x, train)
    r = nn.relu(self.bn(r, train, 'bn1'))
    r = Conv2Plus1D(features=self.features, mid=mid, name='conv2', **opts)(r, train)
    r = self.bn(r, train, 'bn2')
    shortcut = x
    if self.stride != 1 or n_in != self.features:
      s = self.stride
      shortcut = self.conv(self.features, (1, 1, 1), (s, s, s), 'downsample_conv')(x)
      shortcut = self.bn(shortcut, train, 'downsample_bn')
    return nn.relu(r + shortcut)


class R2Plus1D18(_Layers):
  """[B, T, H, W, 3] → [B, 512·width_multiplier] (float32)."""
  width_multiplier: float = 1.0
  remat: bool = False

  @nn.compact
  def __call__(self, video, train):
    opts = dict(bn_decay=self.bn_decay, bn_eps=self.bn_eps, dtype=self.dtype,
                deflated=self.deflated)
    x, frames = image_mode.frames_in(video.astype(self.dtype), self.deflated)
    x = self.conv(scaled(STEM_MID, self.width_multiplier), (1, 7, 7), (1, 2, 2), 'stem_conv_s')(x)
    x = nn.relu(self.bn(x, train, 'stem_bn_s'))
    x = self.conv(scaled(STAGE_WIDTHS[0], self.width_multiplier), (3, 1, 1), (1, 1, 1),
                  'stem_conv_t')(x)
    x = nn.relu(self.bn(x, train, 'stem_bn_t'))
    # Static argnums count `self` as 0: `train` (argument 2) selects the BN mode at trace time.
    block_cls = nn.remat(BasicBlock, static_argnums=(2,)) if self.remat else BasicBlock
    block = functools.partial(block_cls, **opts)
    for stage, (width, stride) in enumerate(zip(STAGE_WIDTHS, STAGE_STRIDES)):
      for i in range(BLOCKS_PER_STAGE):
        x = block(features=scaled(width, self.width_multiplier),
                  stride=stride if i == 0 else 1, name=f'layer{stage + 1}_{i}')(x, train)
    return image_mode.frames_out(image_mode.pooled(x), frames)

  @property
  def output_dim(self):
    return scaled(STAGE_WIDTHS[-1], self.width_multiplier)
