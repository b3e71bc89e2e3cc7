"""torchvision's ResNet (v1: post-activation, 3x3 → 3x3 basic blocks) on log-mel spectrograms:
GDT's audio encoders [B, time, mel, 1] → [B, 512].

GDT (facebookresearch/GDT model.py get_audio_feature_extractor) builds `resnet9` from its
src/resnet.py, torchvision's ResNet with BasicBlock and (1, 1, 1, 1) blocks per stage, or
torchvision's `resnet18` (2, 2, 2, 2), and replaces the first convolution by a 1-channel one
(Conv2d(1, 64, 7, stride 2, padding 3, no bias)); the classifier is not applied (resnet9's
forward stops at the average pool; resnet18's fc is an identity). Layout:
conv 7x7/2 → BN → ReLU → max pool 3x3/2 (padding 1) → four stages of widths 64, 128, 256, 512
with strides 1, 2, 2, 2 → global average pool. A block: relu(BN(conv3x3(x, stride))) → BN(conv3x3)
+ shortcut → ReLU; the shortcut is a 1x1 conv (stride) + BN where the stride or width changes.
Padding is torchvision's (symmetric), not 'SAME'.

GDT's spectrograms are [1, 40 mel, 99 frames] (NCHW: H = frequency, W = time; datasets/
audio_utils.py get_spec); here H is time and W is mel, as the pipeline gives them, so GDT's
kernels would map here with their two spatial axes swapped (no importer for them yet).
"""

import functools

import flax.linen as nn
import jax.numpy as jnp

from mmv.models.channels import scaled

DEPTHS = {9: (1, 1, 1, 1), 18: (2, 2, 2, 2)}
STAGE_WIDTHS = (64, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 2)


class BasicBlock(nn.Module):
  features: int = 64
  stride: int = 1
  bn_decay: float = 0.9
  bn_eps: float = 1e-5
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype)
    bn = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=self.bn_decay,
                           epsilon=self.bn_eps, dtype=self.dtype)
    s = (self.stride, self.stride)
    r = conv(self.features, (3, 3), s, padding=((1, 1), (1, 1)), name='conv1')(x)
    r = nn.relu(bn(name='bn1')(r))
    r = conv(self.features, (3, 3), padding=((1, 1), (1, 1)), name='conv2')(r)
    r = bn(name='bn2')(r)
    shortcut = x
    if self.stride != 1 or x.shape[-1] != self.features:
      shortcut = conv(self.features, (1, 1), s, padding='VALID', name='downsample_conv')(x)
      shortcut = bn(name='downsample_bn')(shortcut)
    return nn.relu(r + shortcut)


class ResNetV1(nn.Module):
  """[B, H, W, C] → [B, 512·width_multiplier] (float32); `depth` 9 (GDT's default) or 18."""
  depth: int = 9
  width_multiplier: float = 1.0
  remat: bool = False
  bn_decay: float = 0.9
  bn_eps: float = 1e-5
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    if self.depth not in DEPTHS:
      raise ValueError(f'ResNetV1 depth {self.depth} not in {sorted(DEPTHS)}')
    x = x.astype(self.dtype)
    x = nn.Conv(scaled(64, self.width_multiplier), (7, 7), (2, 2), padding=((3, 3), (3, 3)),
                use_bias=False, dtype=self.dtype, name='conv1')(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=self.bn_decay,
                             epsilon=self.bn_eps, dtype=self.dtype, name='bn1')(x))
    x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    # Static argnums count `self` as 0: `train` (argument 2) selects the BN mode at trace time.
    block_cls = nn.remat(BasicBlock, static_argnums=(2,)) if self.remat else BasicBlock
    for stage, (width, stride, blocks) in enumerate(
        zip(STAGE_WIDTHS, STAGE_STRIDES, DEPTHS[self.depth])):
      for i in range(blocks):
        x = block_cls(features=scaled(width, self.width_multiplier),
                      stride=stride if i == 0 else 1, bn_decay=self.bn_decay,
                      bn_eps=self.bn_eps, dtype=self.dtype,
                      name=f'layer{stage + 1}_{i}')(x, train)
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))

  @property
  def output_dim(self):
    return scaled(STAGE_WIDTHS[-1], self.width_multiplier)
