"""Deflation (Alayrac et al. 2020, "versatile networks"): a video model's variables → the
variables of the same model whose video backbone ingests images.

The image model is the video model built with `model.deflated` (`image_config`): each video
backbone's image mode (`mmv.models.image_mode`) has the video backbone's parameter tree, its
kernels without their time axis. The paper's rule maps the weights:
- a spatio-temporal kernel [kt, kh, kw, C, C'] is summed over its temporal dimension into the
  2D kernel [kh, kw, C, C'] (a temporal-only 3x1x1 kernel becomes 1x1): on a static video (one
  image repeated) the sum is what the kernel computes, away from the clip's ends;
- S3D-G's space-to-depth stem sees the pairs of frames as channels (dt, dh, dw, c): its kernel
  is summed over its temporal dimension and over the dt pairs, leaving the (dh, dw, c)
  channels of the image's space-to-depth;
- everything else (BatchNorm, self-gating's dense layers, 2D kernels such as TSM's, heads,
  the audio and text towers) is copied: TSM's deflation only turns the channel shift off.
Temporal pooling and self-gating's temporal average have no weights; the image mode drops them.

Zero padding at a clip's ends makes the video network on a static video differ from the
deflated one on its image; `mmv.deflate_fit` re-fits the BatchNorm scales and offsets for it.
"""

import copy

import jax
import jax.numpy as jnp


class DeflationError(ValueError):
  """Variables that do not deflate onto the image model (another model's, a missing leaf)."""


def image_config(config):
  """A copy of `config` whose model is the image model (`model.deflated`; added to a config
  written before the field was)."""
  c = copy.deepcopy(config)
  with c.unlocked():
    c.model.deflated = True
  return c


def deflate_kernel(kernel, shape):
  """A video kernel → the image kernel of `shape`: summed over time, and for a space-to-depth
  stem (input channels twice the image's) over the time pairs of its channels too."""
  if kernel.ndim != len(shape) + 1:
    raise DeflationError(f'kernel {list(kernel.shape)} does not deflate to {list(shape)}')
  x = jnp.sum(kernel.astype(jnp.float32), axis=0)
  channels_in = shape[-2]
  if x.shape[-2] == 2 * channels_in:  # Channels (dt, dh, dw, c): dt the slowest.
    x = jnp.sum(x.reshape(x.shape[:-2] + (2, channels_in, x.shape[-1])), axis=-3)
  if x.shape != tuple(shape):
    raise DeflationError(f'kernel {list(kernel.shape)} does not deflate to {list(shape)}')
  return x.astype(kernel.dtype)


def deflate_variables(variables, image_shapes):
  """The image model's variables from the video model's `variables`: for every leaf of
  `image_shapes` (the image model's variables, arrays or ShapeDtypeStructs), the video leaf at
  the same path, deflated where its shape differs. Any model of `config.method` (MMV, GDT,
  XDC: their video backbones are deflated alike); traceable (jit it to place the result)."""
  flat = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_leaves_with_path(variables)}

  def leaf(path, target):
    name = jax.tree_util.keystr(path)
    if name not in flat:
      raise DeflationError(f'the video model has no variable {name}: these are not the '
                           'variables of the image model\'s video model')
    value = flat[name]
    if tuple(value.shape) == tuple(target.shape):
      return value
    if not name.endswith("['kernel']"):
      raise DeflationError(f'{name}: video {list(value.shape)}, image {list(target.shape)}')
    try:
      return deflate_kernel(value, tuple(target.shape))
    except DeflationError as e:
      raise DeflationError(f'{name}: {e}') from None

  return jax.tree_util.tree_map_with_path(leaf, image_shapes)


def placed_variables(variables, image_abstract):
  """`deflate_variables` placed as `image_abstract` (ShapeDtypeStructs with shardings)."""
  shardings = jax.tree.map(lambda s: s.sharding, image_abstract)
  return jax.jit(lambda v: deflate_variables(v, image_abstract),
                 out_shardings=shardings)(variables)
