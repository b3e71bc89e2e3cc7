"""The MMV model: embedding dims for every graph, FAC composition, global BatchNorm."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmv.methods import mmv as mmv_method
from mmv.models import heads
from mmv.models import mmv as mmv_model


def _inputs(config, batch_size=2):
  """Zero video, audio and text of MMV's batch shapes."""
  batch = mmv_method.init_batch(config, batch_size)
  return batch['video'], batch['audio'], batch['text']


def _model(config, graph):
  config.model.head = graph
  return mmv_model.build_model(config.model, vocab_size=50)


@pytest.mark.parametrize('graph', heads.GRAPHS)
def test_every_graph_gives_the_right_dims(config, graph):
  model = _model(config, graph)
  video, audio, text = _inputs(config, 4)
  variables = model.init(jax.random.key(0), {'video': video, 'audio': audio, 'text': text}, train=False)
  out = model.apply(variables, {'video': video, 'audio': audio, 'text': text}, train=False)
  va = config.model.vat_dim if graph == 'shared' else config.model.va_dim
  vt = config.model.vat_dim
  assert out['video_va'].shape == (4, va) and out['audio_va'].shape == (4, va)
  assert out['video_vt'].shape == (4, vt)
  assert out['text_vt'].shape == (4, config.data.num_captions, vt)
  features, audio_va, audio_vat = model.apply(variables, audio, method=model.embed_audio)
  assert features.shape == (4, 4 * config.model.width)
  if graph == 'disjoint':
    assert audio_vat is None  # No audio–text space in the disjoint graph.
  else:
    assert audio_vat.shape == (4, vt)


@pytest.mark.parametrize('graph', ['fac_relu', 'fac_bnrelu'])
def test_fac_reaches_vat_through_va(config, graph):
  """video_vt = second head(ReLU(video_va)); audio uses the same second head at evaluation."""
  model = _model(config, graph)
  video, audio, text = _inputs(config, 4)
  video = jax.random.uniform(jax.random.key(1), video.shape)
  variables = model.init(jax.random.key(0), {'video': video, 'audio': audio, 'text': text}, train=False)
  _, video_va, video_vt = model.apply(variables, video, method=model.embed_video)
  head_vars = {k: v['heads'] for k, v in variables.items()}
  again = heads.Heads(graph, config.model.va_dim, config.model.vat_dim).apply(
      head_vars, video_va, method=heads.Heads.audio_to_vat)
  np.testing.assert_allclose(again, video_vt, rtol=1e-5, atol=1e-6)
  # Changing only the second head changes video_vt but not video_va.
  params = jax.tree_util.tree_map_with_path(
      lambda p, x: x + 1.0 if 'va_to_vat' in jax.tree_util.keystr(p) else x,
      variables['params'])
  _, va2, vt2 = model.apply({**variables, 'params': params}, video, method=model.embed_video)
  np.testing.assert_allclose(va2, video_va)
  assert not np.allclose(vt2, video_vt)


def test_unknown_names_are_errors(config):
  config.model.video_backbone = 's3d_gg'
  with pytest.raises(ValueError, match="unknown video backbone 's3d_gg'"):
    mmv_model.build_model(config.model, vocab_size=50)
  config.model.video_backbone = 'tiny_video'
  model = _model(config, 'facc')
  with pytest.raises(ValueError, match="unknown head graph 'facc'"):
    model.init(jax.random.key(0), mmv_method.init_batch(config), train=False)


@pytest.mark.slow
def test_batchnorm_uses_batch_statistics_in_training(config):
  model = _model(config, 'fac_relu')
  video, audio, text = _inputs(config, 4)
  video = jax.random.uniform(jax.random.key(1), video.shape)
  variables = model.init(jax.random.key(0), {'video': video, 'audio': audio, 'text': text}, train=False)
  out, updates = model.apply(variables, {'video': video, 'audio': audio, 'text': text}, train=True,
                             mutable=['batch_stats'])
  changed = jax.tree.map(lambda a, b: not jnp.allclose(a, b), variables['batch_stats'],
                         updates['batch_stats'])
  assert any(jax.tree.leaves(changed))
  # An example's training-mode embedding depends on the rest of the batch.
  single, _ = model.apply(variables, {'video': video[:1], 'audio': audio[:1], 'text': text[:1]}, train=True,
                          mutable=['batch_stats'])
  assert not np.allclose(single['video_va'][0], out['video_va'][0], atol=1e-4)
