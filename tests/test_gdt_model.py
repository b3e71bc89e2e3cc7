"""GDT's towers: the audio ResNet-9, the MLP head's layout and the views of the model."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmv.models import gdt as gdt_model
from mmv.models import mmv as mmv_model
from mmv.models import tiny


def _resnet9_params():
  """GDT's src/resnet.py resnet9 (torchvision ResNet, BasicBlock, [1, 1, 1, 1]) with the 1-channel
  conv1 of model.py, without fc: counted from its definition."""
  total = 1 * 64 * 7 * 7 + 2 * 64
  n_in = 64
  for width in (64, 128, 256, 512):
    total += n_in * width * 9 + 2 * width + width * width * 9 + 2 * width
    if n_in != width or width != 64:  # Stride 2 or a new width: 1x1 conv + BN shortcut.
      total += n_in * width + 2 * width
    n_in = width
  return total


def test_audio_resnet9_is_gdts():
  net = mmv_model.AUDIO_BACKBONES['audio_resnet9']()
  x = jax.ShapeDtypeStruct((2, 99, 40, 1), jnp.float32)  # 1 s of GDT's 40-bin log-mel.
  variables = jax.eval_shape(functools.partial(net.init, train=False), jax.random.key(0), x)
  count = sum(math.prod(p.shape) for p in jax.tree.leaves(variables['params']))
  assert count == _resnet9_params() == 4_899_520
  out = jax.eval_shape(functools.partial(net.apply, train=False), variables, x)
  assert out.shape == (2, 512)
  # Post-activation blocks: two 3x3 convolutions, the first with the stride.
  assert variables['params']['layer2_0']['conv1']['kernel'].shape == (3, 3, 64, 128)
  assert variables['params']['layer2_0']['downsample_conv']['kernel'].shape == (1, 1, 64, 128)


def _model(views):
  head = functools.partial(gdt_model.MLPHead, hidden=16, dim=8)
  return gdt_model.GDT(video_backbone=tiny.TinyVideoNet(width=4),
                       audio_backbone=tiny.TinyAudioNet(width=4), video_head=head(),
                       audio_head=head(), views=views, shift_view='shifted')


@pytest.mark.slow
def test_views_and_head():
  views = gdt_model.VIEWS
  model = _model(views)
  rng = np.random.default_rng(0)
  batch = {k: jnp.asarray(rng.standard_normal(s), jnp.float32) for k, s in (
      ('video', (3, 4, 16, 16, 3)), ('audio', (3, 20, 8, 1)),
      ('video_shifted', (3, 4, 16, 16, 3)), ('audio_shifted', (3, 20, 8, 1)))}
  variables = model.init(jax.random.key(0), batch, train=False)
  head = variables['params']['video_head']
  assert set(head) == {'hidden', 'bn', 'out'}
  assert set(head['hidden']) == {'kernel'} and head['hidden']['kernel'].shape == (4 * 4, 16)
  assert head['out']['kernel'].shape == (16, 8) and head['out']['bias'].shape == (8,)
  out = model.apply(variables, batch, train=False)
  assert sorted(out) == sorted(f'{m}_{v}' for m in ('video', 'audio') for v in views)
  for z in out.values():
    np.testing.assert_allclose(np.linalg.norm(z, axis=-1), 1.0, rtol=1e-5)
  # The reversed views are the same towers on time-reversed inputs.
  flipped = {'video': batch['video_shifted'][:, ::-1], 'audio': batch['audio_shifted'][:, ::-1]}
  again = _model(('clip',)).apply(variables, flipped, train=False)
  np.testing.assert_allclose(again['video_clip'], out['video_shifted_reversed'], atol=1e-6)
  np.testing.assert_allclose(again['audio_clip'], out['audio_shifted_reversed'], atol=1e-6)
  assert not np.allclose(out['video_clip'], out['video_reversed'], atol=1e-3)
