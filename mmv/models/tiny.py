"""Small video and audio backbones for CPU runs and tests.

They have the interface of the paper's backbones (S3D-G, TSM-ResNet, audio ResNet):
`__call__(x, train) -> features [B, D]`, BatchNorm over the global batch.
"""

import flax.linen as nn
import jax.numpy as jnp

from mmv.models import image_mode


class ConvBNReLU(nn.Module):
  features: int
  kernel: tuple
  strides: tuple
  bn_decay: float = 0.9
  bn_eps: float = 1e-5
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    x = nn.Conv(self.features, self.kernel, self.strides, padding='SAME', use_bias=False,
                dtype=self.dtype)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_decay,
                     epsilon=self.bn_eps, dtype=self.dtype)(x)
    return nn.relu(x)


class TinyVideoNet(nn.Module):
  """[B, T, H, W, 3] → [B, 4·width]: 2D convs on each frame, (3,1,1) temporal convs between.

  Factorised like R(2+1)D because XLA's CPU 3D convolutions are ~10x slower than 2D ones;
  the temporal convolutions are what see the direction of motion. `deflated`: the image mode
  ([B, H, W, 3] → [B, 4·width], `mmv.models.image_mode`): the temporal units become 1x1.
  """
  width: int = 32
  bn_decay: float = 0.9
  bn_eps: float = 1e-5
  dtype: jnp.dtype = jnp.float32
  deflated: bool = False

  @nn.compact
  def __call__(self, x, train):
    bn = dict(bn_decay=self.bn_decay, bn_eps=self.bn_eps, dtype=self.dtype)
    w, d = self.width, self.deflated
    x, num_frames = image_mode.frames_in(x, d)
    if d:
      frames = clips = lambda y: y
    else:
      b, t = x.shape[:2]
      frames = lambda y: y.reshape((b * t,) + y.shape[2:])
      clips = lambda y: y.reshape((b, t) + y.shape[1:])
    temporal = image_mode.spatial((3, 1, 1), d), image_mode.spatial((1, 1, 1), d)
    x = ConvBNReLU(w, (5, 5), (2, 2), **bn)(frames(x), train)
    x = ConvBNReLU(2 * w, (3, 3), (2, 2), **bn)(x, train)
    x = ConvBNReLU(2 * w, *temporal, **bn)(clips(x), train)
    x = ConvBNReLU(4 * w, (3, 3), (2, 2), **bn)(frames(x), train)
    x = ConvBNReLU(4 * w, *temporal, **bn)(clips(x), train)
    x = ConvBNReLU(4 * w, (3, 3), (1, 1), **bn)(frames(x), train)
    return image_mode.frames_out(image_mode.pooled(clips(x)), num_frames)

  @property
  def output_dim(self):
    return 4 * self.width


class TinyAudioNet(nn.Module):
  """2D ConvNet on log-mel [B, time, mel, 1] → [B, 4·width]."""
  width: int = 32
  bn_decay: float = 0.9
  bn_eps: float = 1e-5
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    bn = dict(bn_decay=self.bn_decay, bn_eps=self.bn_eps, dtype=self.dtype)
    w = self.width
    x = ConvBNReLU(w, (3, 3), (1, 1), **bn)(x, train)
    x = ConvBNReLU(2 * w, (3, 3), (2, 2), **bn)(x, train)
    x = ConvBNReLU(4 * w, (3, 3), (2, 2), **bn)(x, train)
    x = ConvBNReLU(4 * w, (3, 3), (2, 2), **bn)(x, train)
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))

  @property
  def output_dim(self):
    return 4 * self.width
