"""The paper's backbones: sizes against the paper, the temporal shift, space-to-depth, remat."""

import functools
import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmv.models import mmv as mmv_model
from mmv.models import resnet
from mmv.models import s3d
from mmv.models import summary
from mmv.models import tsm_resnet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# MMV paper: parameters and feature sizes of the backbones. The paper gives none for the audio
# ResNet-18: 6,974,144 is counted by hand from the reference's structure (REFERENCE_RESNET18).
PAPER = {'s3d_g': (9.1e6, 1024), 'tsm_resnet50': (23.5e6, 2048),
         'tsm_resnet50x2': (93.9e6, 4096), 'audio_resnet50': (23.5e6, 2048),
         'audio_resnet18': (6.97e6, 512)}

# Kernel shapes [h, w, in, out] of every convolution of the reference's audio ResNet-18:
# deepmind-research mmv/models/resnet.py, BasicBlock (conv_0: 1x1, stride 1; conv_1: 3x3 with
# the unit's stride; shortcut_conv: 1x1 with the stride, first block of a unit that changes the
# width), built by mmv/models/mm_embeddings.py AudioModule('resnet18') as ResNetV2(depth=18):
# blocks (2, 2, 2, 2), widths (64, 128, 256, 512), strides (1, 2, 2, 2), a 7x7/2 stem.
REFERENCE_RESNET18 = {
    'initial_conv': (7, 7, 1, 64),
    'unit_0_block_0': {'conv_0': (1, 1, 64, 64), 'conv_1': (3, 3, 64, 64)},
    'unit_0_block_1': {'conv_0': (1, 1, 64, 64), 'conv_1': (3, 3, 64, 64)},
    'unit_1_block_0': {'shortcut_conv': (1, 1, 64, 128), 'conv_0': (1, 1, 64, 128),
                       'conv_1': (3, 3, 128, 128)},
    'unit_1_block_1': {'conv_0': (1, 1, 128, 128), 'conv_1': (3, 3, 128, 128)},
    'unit_2_block_0': {'shortcut_conv': (1, 1, 128, 256), 'conv_0': (1, 1, 128, 256),
                       'conv_1': (3, 3, 256, 256)},
    'unit_2_block_1': {'conv_0': (1, 1, 256, 256), 'conv_1': (3, 3, 256, 256)},
    'unit_3_block_0': {'shortcut_conv': (1, 1, 256, 512), 'conv_0': (1, 1, 256, 512),
                       'conv_1': (3, 3, 512, 512)},
    'unit_3_block_1': {'conv_0': (1, 1, 512, 512), 'conv_1': (3, 3, 512, 512)},
}


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(PAPER))
def test_backbone_sizes_match_the_paper(name):
  params, dim = PAPER[name]
  s = summary.summary(name)
  assert abs(s['params'] - params) / params < 0.02, s
  assert s['output_dim'] == dim
  module = {**mmv_model.VIDEO_BACKBONES, **mmv_model.AUDIO_BACKBONES}[name]()
  assert module.output_dim == dim


def test_audio_resnet18_convolutions_are_the_references():
  """Kernel shapes of every convolution, and where the stride sits: the spatial size after each
  convolution of a striding block (shapes only, nothing is compiled)."""
  x = jax.ShapeDtypeStruct((2, 64, 32, 1), jnp.float32)  # [B, time, mel, 1]
  net = mmv_model.AUDIO_BACKBONES['audio_resnet18']()
  params = jax.eval_shape(functools.partial(net.init, train=False), jax.random.key(0), x)[
      'params']
  kernels = {name: ({conv: tuple(v['kernel'].shape) for conv, v in layer.items()
                     if 'conv' in conv} if 'block' in name else tuple(layer['kernel'].shape))
             for name, layer in params.items() if 'conv' in name or 'block' in name}
  assert kernels == REFERENCE_RESNET18

  block = resnet.BasicBlock(128, stride=2, use_projection=True)
  y = jax.ShapeDtypeStruct((2, 16, 8, 64), jnp.float32)
  variables = jax.eval_shape(functools.partial(block.init, train=False), jax.random.key(0), y)
  _, state = jax.eval_shape(functools.partial(block.apply, train=False,
                                              capture_intermediates=True), variables, y)
  shape = lambda name: state['intermediates'][name]['__call__'][0].shape
  assert shape('conv_0') == (2, 16, 8, 128)  # 1x1, stride 1.
  assert shape('conv_1') == (2, 8, 4, 128)  # 3x3, the block's stride.
  assert shape('shortcut_conv') == (2, 8, 4, 128)


def test_summary_cli_prints_one_json_line():
  result = subprocess.run([sys.executable, '-m', 'mmv.models.summary', 'tsm_resnet50x2'],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  assert json.loads(result.stdout) == {'name': 'tsm_resnet50x2', 'params': 93891712,
                                       'output_dim': 4096}


def test_temporal_shift_moves_the_reference_channels():
  """16 channels, n = 2: out[:2] from t+1 (input's last 2), out[-2:] from t−1 (input's first 2)."""
  t, c = 3, 16
  x = np.array([[100 * (f + 1) + ch for ch in range(c)] for f in range(t)], np.float32)
  out = np.asarray(tsm_resnet.temporal_shift(jnp.asarray(x).reshape(t, 1, 1, c), t))
  out = out.reshape(t, c)
  expected = x.copy()
  expected[:, :2] = np.concatenate([x[1:, 14:], np.zeros((1, 2))])  # Frame t+1's 14, 15.
  expected[:, 14:] = np.concatenate([np.zeros((1, 2)), x[:-1, :2]])  # Frame t−1's 0, 1.
  np.testing.assert_array_equal(out, expected)
  assert out[0, 0] == 214 and out[2, 0] == 0  # Frame 0 sees frame 1; the last sees zeros.
  assert out[1, 15] == 101 and out[0, 15] == 0
  # Clips in a batch do not leak into each other.
  two = jnp.concatenate([jnp.asarray(x), jnp.asarray(x) + 1000]).reshape(2 * t, 1, 1, c)
  shifted = np.asarray(tsm_resnet.temporal_shift(two, t)).reshape(2, t, c)
  np.testing.assert_array_equal(shifted[0], out)
  assert shifted[1, 2, 0] == 0 and shifted[1, 0, 14] == 0 and shifted[1, 1, 14] == 1100


def test_space_to_depth_layout():
  """Channel 8·? of the output holds (dt, dh, dw, c) of a 2x2x2 input block, c fastest."""
  video = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.float32).reshape(1, 2, 4, 4, 3)
  out = np.asarray(s3d.space_to_depth(video))
  assert out.shape == (1, 1, 2, 2, 24)
  v = np.asarray(video)[0]
  np.testing.assert_array_equal(out[0, 0, 1, 0], np.concatenate(
      [v[dt, 2 + dh, dw, :] for dt in (0, 1) for dh in (0, 1) for dw in (0, 1)]))


@pytest.mark.slow
@pytest.mark.parametrize('name', ['s3d_g', 'audio_resnet18', 'r2plus1d_18', 'audio_resnet9'])
def test_remat_keeps_the_variables_and_checkpoints_blocks(name):
  """Same variables (checkpoints and the importer stay valid); blocks run under jax.checkpoint,
  so their activations are recomputed in the backward pass. Traced only, nothing compiled."""
  video = name in mmv_model.VIDEO_BACKBONES
  shape = (2, 4, 32, 32, 3) if video else (2, 32, 32, 1)
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  table = mmv_model.VIDEO_BACKBONES if video else mmv_model.AUDIO_BACKBONES
  build = functools.partial(table[name], width_multiplier=0.0625)
  init = lambda m: jax.eval_shape(functools.partial(m.init, train=False), jax.random.key(1), x)
  variables = init(build())
  assert jax.tree.map(lambda v: v.shape, init(build(remat=True))) == jax.tree.map(
      lambda v: v.shape, variables)

  def checkpointed(m):
    jaxpr = str(jax.make_jaxpr(functools.partial(m.apply, train=True, mutable=['batch_stats']))(
        variables, x))
    return len(re.findall(r'= (?:checkpoint|remat2?)\[', jaxpr))

  blocks = {'s3d_g': 9, 'audio_resnet18': 8, 'r2plus1d_18': 8, 'audio_resnet9': 4}[name]
  assert checkpointed(build(remat=True)) == blocks
  assert checkpointed(build()) == 0
