"""Deflation of the video backbones (mmv.models.deflate): facts of the MMV paper checked against
computations that do not use the deflated modules.

- Summed kernels: on a static video (one image repeated), a 3D convolution at a frame away from
  the clip's ends is the 2D convolution of the image with the kernel summed over time; for
  S3D-G's space-to-depth stem, summed over time and over the time pairs of its channels. Both
  sides by `jax.lax.conv_general_dilated` directly.
- Whole networks: the deflated backbone on an image is the video backbone on the static video
  once every temporal zero padding is replaced by replicating the clip's end frames ('edge'):
  then no frame sees a boundary, and the video network's output is the summed kernels' (its
  convolutions are recomputed here by lax.conv_general_dilated with edge padding, through a
  flax interceptor). With the zero padding the two differ: what the BN re-fit corrects.
- TSM: deflated, it is the plain ResNet-50 v2 (mmv.models.resnet, built without a shift) with
  the same weights, frame by frame.
- Paper-size parameter counts (eval_shape): the video ones less the summed temporal dims.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from mmv.models import deflate
from mmv.models import mmv as mmv_model
from mmv.models import resnet
from mmv.models import s3d

SIZE = 16  # Frames SIZE x SIZE, 8 of them.
VIDEO_5D = ('NDHWC', 'DHWIO', 'NDHWC')
IMAGE_4D = ('NHWC', 'HWIO', 'NHWC')
# (backbone, model options): small widths.
NETWORKS = {
    'tiny_video': dict(width=4),
    's3d_g': dict(width_multiplier=0.0625),
    's3d_g_space_to_depth': dict(width_multiplier=0.0625, space_to_depth=True),
    'r2plus1d_18': dict(width_multiplier=0.0625),
}


def _model_config(backbone, deflated=False, **options):
  c = common.paper().model
  c.video_backbone = backbone.replace('_space_to_depth', '')
  for k, v in options.items():
    c[k] = v
  c.deflated = deflated
  return c


def _random_variables(abstract, seed=0):
  """Random values of the tree's shapes; BN statistics and scales away from the identity."""
  rng = np.random.default_rng(seed)

  def value(path, s):
    name = jax.tree_util.keystr(path)
    if "'var'" in name:
      return rng.uniform(0.5, 1.5, s.shape).astype(np.float32)
    if "'scale'" in name:
      return rng.uniform(0.8, 1.2, s.shape).astype(np.float32)
    if "'kernel'" in name:
      return (rng.standard_normal(s.shape) / np.sqrt(np.prod(s.shape[:-1]))).astype(np.float32)
    return (0.1 * rng.standard_normal(s.shape)).astype(np.float32)

  return jax.tree_util.tree_map_with_path(value, abstract)


def _pads(padding, sizes, kernel, strides):
  if isinstance(padding, str):
    return jax.lax.padtype_to_pads(sizes, kernel, strides, padding)
  return [tuple(p) for p in padding]


def _edge_padded_convs(next_fun, args, kwargs, context):
  """Flax interceptor: every 3D convolution recomputed by lax.conv_general_dilated with its
  temporal padding replicating the end frames instead of zeros (spatial padding unchanged)."""
  module = context.module
  if not (isinstance(module, nn.Conv) and context.method_name == '__call__' and
          args[0].ndim == 5):
    return next_fun(*args, **kwargs)
  x = args[0]
  kernel = module.get_variable('params', 'kernel')
  size = tuple(kernel.shape[:3])
  strides = module.strides if isinstance(module.strides, tuple) else (module.strides,) * 3
  pads = _pads(module.padding, x.shape[1:4], size, strides)
  x = jnp.pad(x, ((0, 0), pads[0], (0, 0), (0, 0), (0, 0)), mode='edge')
  return jax.lax.conv_general_dilated(x, kernel, strides, [(0, 0)] + list(pads[1:]),
                                      dimension_numbers=VIDEO_5D,
                                      precision=jax.lax.Precision.HIGHEST)


def _networks(name):
  """(video backbone, image backbone, video variables, image variables)."""
  video_net = mmv_model.build_backbone(_model_config(name, **NETWORKS[name]), 'video')
  image_net = mmv_model.build_backbone(_model_config(name, True, **NETWORKS[name]), 'video')
  video = jnp.zeros((1, 8, SIZE, SIZE, 3))
  abstract = jax.eval_shape(functools.partial(video_net.init, train=False), jax.random.key(0),
                            video)
  variables = _random_variables(dict(abstract))
  image_shapes = jax.eval_shape(functools.partial(image_net.init, train=False),
                                jax.random.key(0), video[:, 0])
  return video_net, image_net, variables, deflate.deflate_variables(variables, image_shapes)


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(NETWORKS))
def test_the_deflated_network_on_an_image_is_the_edge_padded_video_network_on_a_static_video(
    name):
  video_net, image_net, video_vars, image_vars = _networks(name)
  images = np.random.default_rng(1).uniform(0, 1, (2, SIZE, SIZE, 3)).astype(np.float32)
  static = np.repeat(images[:, None], 8, axis=1)
  frames = np.stack([images[0], images[1], images[0]])[None]

  @jax.jit
  def outputs(image_vars, video_vars):
    """One program: compiled once, not once per network call."""
    with jax.default_matmul_precision('float32'):
      deflated = image_net.apply(image_vars, images, False)
      with nn.intercept_methods(_edge_padded_convs):
        edge = video_net.apply(video_vars, static, False)
      zeros = video_net.apply(video_vars, static, False)
      # A deflated backbone takes videos too: its frames as images, features averaged.
      on_video = image_net.apply(image_vars, frames, False)
    return deflated, edge, zeros, on_video

  deflated, edge, zeros, on_video = map(np.asarray, outputs(image_vars, video_vars))
  scale = np.max(np.abs(edge))
  assert scale > 0
  np.testing.assert_allclose(deflated, edge, atol=2e-4 * scale, rtol=0)
  # The clip's zero padding makes the plain video network differ (the re-fit's reason).
  assert np.max(np.abs(zeros - deflated)) > 1e-2 * scale
  # The deflated backbone on the video of frames images[0], images[1], images[0].
  np.testing.assert_allclose(on_video[0], (2 * deflated[0] + deflated[1]) / 3, rtol=1e-4,
                             atol=1e-5 * scale)


def _conv(x, kernel, dims, strides=None, padding='SAME'):
  strides = strides or (1,) * (x.ndim - 2)
  return np.asarray(jax.lax.conv_general_dilated(
      x, kernel, strides, padding, dimension_numbers=dims, precision=jax.lax.Precision.HIGHEST))


def test_a_summed_kernel_is_the_3d_kernel_on_an_interior_frame_of_a_static_video():
  rng = np.random.default_rng(2)
  image = rng.standard_normal((1, 9, 9, 4)).astype(np.float32)
  static = np.repeat(image[:, None], 5, axis=1)
  for size in ((3, 3, 3), (3, 1, 1), (7, 7, 7)):
    kernel = rng.standard_normal(size + (4, 6)).astype(np.float32)
    summed = np.asarray(deflate.deflate_kernel(kernel, size[1:] + (4, 6)))
    assert summed.shape == size[1:] + (4, 6)  # A 3x1x1 kernel becomes 1x1.
    video = _conv(static, kernel, VIDEO_5D)
    t = 2  # Sees no padding for kernels of 3; the 7-wide one sees padding whatever t is.
    expected = _conv(image, summed, IMAGE_4D)[0]
    if size[0] == 3:
      np.testing.assert_allclose(video[0, t], expected, rtol=1e-4, atol=1e-4)
      assert not np.allclose(video[0, 0], expected, atol=1e-3)  # The first frame sees zeros.
    else:
      video = _conv(np.repeat(image[:, None], 13, axis=1), kernel, VIDEO_5D)
      np.testing.assert_allclose(video[0, 6], expected, rtol=1e-4, atol=1e-4)


def test_the_space_to_depth_stem_sums_its_time_pairs():
  """S3D-G's released stem: (2, 4, 4) convolution over the 24 channels (dt, dh, dw, c) of the
  space-to-depth video; deflated, (4, 4) over the 12 channels (dh, dw, c) of the image's."""
  rng = np.random.default_rng(3)
  image = rng.uniform(0, 1, (1, 16, 16, 3)).astype(np.float32)
  kernel = rng.standard_normal((2, 4, 4, 24, 5)).astype(np.float32)
  # The layout by hand: channel (dt, dh, dw, c) of output pixel (i, j) is input pixel
  # (2i + dh, 2j + dw), channel c, of frame dt.
  s2d_image = np.zeros((1, 8, 8, 12), np.float32)
  for dh in range(2):
    for dw in range(2):
      s2d_image[..., (dh * 2 + dw) * 3:(dh * 2 + dw + 1) * 3] = image[0, dh::2, dw::2]
  np.testing.assert_array_equal(s3d.space_to_depth_image(image), s2d_image)
  static = s3d.space_to_depth(np.repeat(image[:, None], 6, axis=1))
  np.testing.assert_array_equal(static[0, 1], np.concatenate([s2d_image[0]] * 2, axis=-1))
  video = _conv(static, kernel, VIDEO_5D)
  summed = deflate.deflate_kernel(kernel, (4, 4, 12, 5))
  np.testing.assert_allclose(video[0, 1], _conv(s2d_image, summed, IMAGE_4D)[0], rtol=1e-4,
                             atol=1e-4)


@pytest.mark.slow
def test_deflated_tsm_is_a_plain_resnet50_frame_by_frame():
  c = _model_config('tsm_resnet50', width_multiplier=0.0625)
  video_net = mmv_model.build_backbone(c, 'video')
  image_net = mmv_model.build_backbone(_model_config('tsm_resnet50', True,
                                                     width_multiplier=0.0625), 'video')
  rng = np.random.default_rng(4)
  video = rng.uniform(0, 1, (2, 4, 32, 32, 3)).astype(np.float32)
  abstract = jax.eval_shape(functools.partial(video_net.init, train=False), jax.random.key(0),
                            video)
  variables = _random_variables(dict(abstract))
  image_shapes = jax.eval_shape(functools.partial(image_net.init, train=False),
                                jax.random.key(0), video[:, 0])
  image_vars = deflate.deflate_variables(variables, image_shapes)
  # TSM's kernels are 2D already: deflation copies every variable.
  jax.tree.map(np.testing.assert_array_equal, image_vars, variables)
  plain = resnet.ResNetV2(depth=50, width_multiplier=0.0625)  # No shift.
  trunk = {k: v['resnet'] for k, v in variables.items()}
  frames = video.reshape((-1,) + video.shape[2:])

  @jax.jit
  def outputs(trunk, image_vars, variables):
    """One program: compiled once, not op by op."""
    return (plain.apply(trunk, frames, False),
            [image_net.apply(image_vars, video[:, t], False) for t in range(4)],
            video_net.apply(variables, video, False))

  expected, per_frame, on_video = jax.tree.map(np.asarray, outputs(trunk, image_vars, variables))
  expected = expected.reshape(2, 4, -1)
  for t in range(4):
    np.testing.assert_allclose(per_frame[t], expected[:, t], rtol=1e-4, atol=1e-5)
  # The video network's shift mixes the frames: not the plain ResNet's mean.
  assert not np.allclose(on_video, expected.mean(1), atol=1e-3)


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize('name,options', [
    ('s3d_g', {}), ('s3d_g', {'space_to_depth': True}), ('tsm_resnet50', {}),
    ('tsm_resnet50x2', {}), ('r2plus1d_18', {})])
@pytest.mark.slow
def test_paper_size_deflated_parameter_counts(name, options):
  """The image network has the video one's parameters less the summed temporal dims: each 3D
  kernel [kt, ...] counts 1/kt of its size (the space-to-depth stem 1/(2·kt): its time pairs of
  channels are summed too)."""
  shapes = {}
  for deflated in (False, True):
    net = mmv_model.build_backbone(_model_config(name, deflated, **options), 'video')
    video = jax.ShapeDtypeStruct((1, 8, 64, 64, 3), jnp.float32)
    shapes[deflated] = jax.eval_shape(functools.partial(net.init, train=False),
                                      jax.random.key(0), video)['params']
  expected = 0
  for path, leaf in jax.tree_util.tree_leaves_with_path(shapes[False]):
    size = int(np.prod(leaf.shape))
    if leaf.ndim == 5:
      size //= leaf.shape[0]
      if 'Conv2d_1a_7x7' in jax.tree_util.keystr(path) and options.get('space_to_depth'):
        assert leaf.shape[3] == 24
        size //= 2
    expected += size
  assert _count(shapes[True]) == expected
  if name.startswith('tsm'):
    assert expected == _count(shapes[False])
  else:
    assert expected < _count(shapes[False])


def test_embed_image_needs_the_deflated_backbone():
  c = common.on_synthetic_data(common.paper())
  c.model.video_backbone, c.model.audio_backbone, c.model.width = 'tiny_video', 'tiny_audio', 4
  model = mmv_model.build_model(c.model, vocab_size=10)
  batch = {'video': jnp.zeros((2, 8, 32, 32, 3)), 'audio': jnp.zeros((2, 64, 32, 1)),
           'text': jnp.zeros((2, 2, 8), jnp.int32)}
  variables = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0),
                             batch)
  with pytest.raises(ValueError, match='deflated'):
    jax.eval_shape(functools.partial(model.apply, method=model.embed_image), variables,
                   jnp.zeros((2, 32, 32, 3)))
  c.model.deflated = True
  image_model = mmv_model.build_model(c.model, vocab_size=10)
  variables = jax.eval_shape(functools.partial(image_model.init, train=False),
                             jax.random.key(0), batch)
  out = jax.eval_shape(functools.partial(image_model.apply, method=image_model.embed_image),
                       variables, jnp.zeros((2, 32, 32, 3)))
  assert [x.shape for x in out] == [(2, 16), (2, c.model.va_dim), (2, c.model.vat_dim)]
  with pytest.raises(ValueError, match=r'\[B, H, W, 3\]'):
    jax.eval_shape(functools.partial(image_model.apply, method=image_model.embed_image),
                   variables, jnp.zeros((2, 8, 32, 32, 3)))


def test_the_image_config_of_a_config_written_before_deflation():
  """A training run's config.json from before `model.deflated`: locked, without the field."""
  old = common.paper()
  del old.model['deflated']
  old.lock()
  assert deflate.image_config(old).model.deflated and 'deflated' not in old.model
