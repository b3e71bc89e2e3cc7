"""TSM-ResNet50 (Lin et al. 2019), MMV's ResNet video backbone: [B, T, H, W, 3] → [B, 2048·width].

Frames are processed as B·T images by a pre-activation ResNet-50 v2 whose blocks shift part of
their pre-activation channels along time (after the shortcut is taken), so 2D convolutions mix
neighbouring frames at no extra cost. Features are averaged over space per frame, then over time.
`deflated`: the image mode (MMV's deflation of TSM): the shift is off, which leaves the plain
ResNet-50 v2 (x2) on images [B, H, W, 3] (on a video's frames one by one, features averaged).
"""

import functools

import flax.linen as nn
import jax.numpy as jnp

from mmv.models import resnet


def temporal_shift(x, num_frames, fraction=0.125):
  """[B·T, H, W, C] → the same shape, with n = int(C·fraction) channels moved in time.

  The reference's channel order, which the released weights depend on: output channels [0, n)
  at frame t are input channels [C−n, C) of frame t+1, output channels [C−n, C) at frame t are
  input channels [0, n) of frame t−1, the rest is unchanged; zeros beyond the clip's ends.
  """
  _, h, w, c = x.shape
  n = int(c * fraction)
  if n == 0:
    return x
  x = x.reshape(-1, num_frames, h, w, c)
  pad = lambda y, before, after: jnp.pad(y, ((0, 0), (before, after), (0, 0), (0, 0), (0, 0)))
  from_next = pad(x[:, 1:, :, :, c - n:], 0, 1)
  from_previous = pad(x[:, :-1, :, :, :n], 1, 0)
  shifted = jnp.concatenate([from_next, x[..., n:c - n], from_previous], axis=-1)
  return shifted.reshape(-1, h, w, c)


class TSMResNet(nn.Module):
  """TSM on ResNet-50 v2; `width` 1 or 2 is the paper's x1 / x2 network (23.5M / 93.9M params).

  `width_multiplier` scales it further (tests use a fraction).
  """
  width: int = 1
  width_multiplier: float = 1.0
  shift_fraction: float = 0.125
  remat: bool = False
  bn_decay: float = 0.9
  bn_eps: float = 1e-5
  dtype: jnp.dtype = jnp.float32
  deflated: bool = False

  @nn.compact
  def __call__(self, video, train):
    if video.ndim == 4:  # Images (image mode only: the ResNet's input is the same).
      video = video[:, None]
    b, t = video.shape[:2]
    shift = None if self.deflated else functools.partial(temporal_shift, num_frames=t,
                                                         fraction=self.shift_fraction)
    trunk = resnet.ResNetV2(50, self.width * self.width_multiplier, shift=shift, remat=self.remat,
                            bn_decay=self.bn_decay, bn_eps=self.bn_eps, dtype=self.dtype,
                            name='resnet')
    features = trunk(video.reshape((b * t,) + video.shape[2:]), train)
    return jnp.mean(features.reshape(b, t, -1), axis=1)

  @property
  def output_dim(self):
    return resnet.ResNetV2(50, self.width * self.width_multiplier).output_dim
