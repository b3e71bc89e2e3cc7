"""The image mode of the video backbones: what deflation (Alayrac et al. 2020) changes in a layer.

A deflated backbone ingests images [B, H, W, 3]: its spatio-temporal kernels lose their time
axis (`spatial`), its temporal pools and strides go, its clip-wide means cover space only.
Given a video [B, T, H, W, 3] it embeds each frame as an image and averages the features over
time (`frames_in` / `frames_out`), so a deflated model still takes the video batches that
initialise and evaluate every model. `mmv.models.deflate` maps a video model's variables onto
it.
"""

import jax.numpy as jnp


def spatial(shape, deflated):
  """A (time, height, width) kernel or stride → (height, width) in image mode, else as is."""
  return tuple(shape[1:]) if deflated else tuple(shape)


def frames_in(x, deflated):
  """(the backbone's input, its number of frames): a deflated backbone's video [B, T, ...]
  becomes B·T images; its images (and a video backbone's input) pass as they are (T 0)."""
  if deflated and x.ndim == 5:
    return x.reshape((-1,) + x.shape[2:]), x.shape[1]
  return x, 0


def frames_out(features, frames):
  """Per-image features [B·T, D] → their mean over each video's T frames [B, D]."""
  if not frames:
    return features
  return jnp.mean(features.reshape((-1, frames) + features.shape[1:]), axis=1)


def pooled(x):
  """Mean over every axis but the batch and the channels (time and space, or space), float32."""
  return jnp.mean(x.astype(jnp.float32), axis=tuple(range(1, x.ndim - 1)))
