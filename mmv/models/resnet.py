"""Pre-activation ResNet v2 (He et al. 2016): MMV's audio backbone on log-mel spectrograms
[B, time, mel, 1] → [B, 2048] (ResNet-50) or [B, 512] (ResNet-18), and the trunk of TSM-ResNet.

Layer names follow the reference's structure (initial_conv, unit_U_block_B/conv_0..2,
shortcut_conv) so that `mmv.tools.import_deepmind` maps the released checkpoints by rule.

Blocks are pre-activation: relu(BN(x)) feeds the convolutions and, in the first block of a unit,
the 1x1 projection shortcut; otherwise the shortcut is x itself. The stem convolution has no BN
(the first block normalises its output), and the network ends with BN → ReLU → spatial mean.
"""

import functools
from typing import Callable, Optional

import flax.linen as nn
import jax.numpy as jnp

from mmv.models.channels import scaled

# depth → (block kind, blocks per unit); units have strides (1, 2, 2, 2).
DEPTHS = {18: ('basic', (2, 2, 2, 2)), 50: ('bottleneck', (3, 4, 6, 3))}
UNIT_CHANNELS = {'basic': (64, 128, 256, 512), 'bottleneck': (256, 512, 1024, 2048)}
UNIT_STRIDES = (1, 2, 2, 2)


class _Block(nn.Module):
  """Shared fields of the two block kinds."""
  channels: int
  stride: int = 1
  use_projection: bool = False
  # Applied to the pre-activation after the shortcut is taken (TSM's temporal shift).
  shift: Optional[Callable] = None
  bn_decay: float = 0.9
  bn_eps: float = 1e-5
  dtype: jnp.dtype = jnp.float32

  def conv(self, features, kernel, stride, name):
    return nn.Conv(features, (kernel, kernel), (stride, stride), padding='SAME', use_bias=False,
                   dtype=self.dtype, name=name)

  def bn_relu(self, x, train, name):
    return nn.relu(nn.BatchNorm(use_running_average=not train, momentum=self.bn_decay,
                                epsilon=self.bn_eps, dtype=self.dtype, name=name)(x))

  def preactivation(self, x, train):
    """(pre-activation for the residual branch, shortcut)."""
    preact = self.bn_relu(x, train, 'bn_0')
    shortcut = x
    if self.use_projection:
      shortcut = self.conv(self.channels, 1, self.stride, 'shortcut_conv')(preact)
    if self.shift is not None:
      preact = self.shift(preact)
    return preact, shortcut


class BottleneckBlock(_Block):
  """1x1 (channels/4) → BN-ReLU → 3x3 (stride) → BN-ReLU → 1x1 (channels), plus shortcut."""

  @nn.compact
  def __call__(self, x, train):
    preact, shortcut = self.preactivation(x, train)
    inner = max(1, self.channels // 4)
    r = self.conv(inner, 1, 1, 'conv_0')(preact)
    r = self.conv(inner, 3, self.stride, 'conv_1')(self.bn_relu(r, train, 'bn_1'))
    r = self.conv(self.channels, 1, 1, 'conv_2')(self.bn_relu(r, train, 'bn_2'))
    return shortcut + r


class BasicBlock(_Block):
  """1x1 → BN-ReLU → 3x3 (stride), both `channels` wide, plus shortcut.

  DeepMind's reference (mmv/models/resnet.py, BasicBlock, which its AudioModule builds for
  `resnet18`) has this 1x1 first convolution, not the ResNet paper's 3x3 → 3x3; the audio
  ResNet-18 follows the reference, as ResNet-50 does.
  """

  @nn.compact
  def __call__(self, x, train):
    preact, shortcut = self.preactivation(x, train)
    r = self.conv(self.channels, 1, 1, 'conv_0')(preact)
    r = self.conv(self.channels, 3, self.stride, 'conv_1')(self.bn_relu(r, train, 'bn_1'))
    return shortcut + r


class ResNetV2(nn.Module):
  """[N, H, W, C] → [N, D]: 7x7/2 stem, 3x3/2 max pool, four units, BN → ReLU → mean over H, W.

  `width_multiplier` scales every layer's channels (TSM-ResNet50x2 is 2). `shift` is passed to
  every block (None for audio).
  """
  depth: int = 50
  width_multiplier: float = 1.0
  shift: Optional[Callable] = None
  remat: bool = False
  bn_decay: float = 0.9
  bn_eps: float = 1e-5
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    if self.depth not in DEPTHS:
      raise ValueError(f'ResNet depth {self.depth} not in {sorted(DEPTHS)}')
    kind, blocks_per_unit = DEPTHS[self.depth]
    block_cls = BottleneckBlock if kind == 'bottleneck' else BasicBlock
    # Static argnums count `self` as 0: `train` (argument 2) selects the BN mode at trace time.
    block_cls = nn.remat(block_cls, static_argnums=(2,)) if self.remat else block_cls
    block = functools.partial(block_cls, shift=self.shift, bn_decay=self.bn_decay,
                              bn_eps=self.bn_eps, dtype=self.dtype)
    x = x.astype(self.dtype)
    x = nn.Conv(scaled(64, self.width_multiplier), (7, 7), (2, 2), padding='SAME',
                use_bias=False, dtype=self.dtype, name='initial_conv')(x)
    x = nn.max_pool(x, (3, 3), (2, 2), padding='SAME')
    for unit, (channels, num_blocks, stride) in enumerate(
        zip(UNIT_CHANNELS[kind], blocks_per_unit, UNIT_STRIDES)):
      channels = scaled(channels, self.width_multiplier)
      for i in range(num_blocks):
        x = block(channels, stride if i == 0 else 1,
                  use_projection=i == 0 and channels != x.shape[-1],
                  name=f'unit_{unit}_block_{i}')(x, train)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=self.bn_decay,
                             epsilon=self.bn_eps, dtype=self.dtype, name='final_bn')(x))
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))

  @property
  def output_dim(self):
    return scaled(UNIT_CHANNELS[DEPTHS[self.depth][0]][-1], self.width_multiplier)

