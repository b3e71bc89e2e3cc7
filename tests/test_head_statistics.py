"""Which inputs update the BatchNorm statistics of the projection heads in training.

The FAC graphs map audio into S_vat through the video's second head (S_va → S_vat) at
evaluation only, as the released MMV models do: in training, audio must not move that head's
moving averages (nor `fac_bn`'s), or the video's S_vat embedding, which text retrieval and
zero-shot classification use, is normalised at evaluation with statistics partly made of
audio. For every graph, the heads' statistics after several training passes must be exactly
those that the video (and text, and audio for its own head) produce, whatever the audio's
distribution in S_va.
"""

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


def _train_passes(model, variables, video, audio, text, passes=4):
  stats = variables['batch_stats']
  for _ in range(passes):
    _, updates = model.apply({'params': variables['params'], 'batch_stats': stats},
                             {'video': video, 'audio': audio, 'text': text}, train=True,
                             mutable=['batch_stats'])
    stats = updates['batch_stats']
  return stats


@pytest.mark.slow
@pytest.mark.parametrize('graph', heads.GRAPHS)
def test_audio_never_moves_the_video_heads_statistics(config, graph):
  config.model.head = graph
  model = mmv_model.build_model(config.model, vocab_size=50)
  video, audio, text = _inputs(config, 8)
  video = jax.random.uniform(jax.random.key(1), video.shape)
  variables = model.init(jax.random.key(0), {'video': video, 'audio': audio, 'text': text}, train=False)
  # Two audio batches whose S_va features differ clearly from each other and from the
  # video's: a large offset and scale on the log-mel input.
  quiet = jax.random.normal(jax.random.key(2), audio.shape)
  loud = 25.0 * jax.random.normal(jax.random.key(3), audio.shape) + 40.0
  va_of = lambda a: model.apply(variables, a, method=model.embed_audio)[1]
  video_va = model.apply(variables, video, method=model.embed_video)[1]
  assert not np.allclose(va_of(quiet).mean(0), va_of(loud).mean(0), atol=1e-2)
  assert not np.allclose(va_of(loud).mean(0), video_va.mean(0), atol=1e-2)

  with_quiet = _train_passes(model, variables, video, quiet, text).get('heads', {})
  with_loud = _train_passes(model, variables, video, loud, text).get('heads', {})
  video_heads = [name for name in with_quiet if name != 'audio_proj']
  # Every graph but `shared` (linear heads without BatchNorm) normalises its video heads.
  assert bool(video_heads) == (graph != 'shared')
  for name in video_heads:
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                 with_quiet[name], with_loud[name])

  if graph.startswith('fac'):
    # And they are what the video alone produces: the video's own training-mode pass.
    def video_only(stats):
      _, updates = model.apply({'params': variables['params'], 'batch_stats': stats}, video,
                               True, method=model.embed_video, mutable=['batch_stats'])
      return updates['batch_stats']
    stats = variables['batch_stats']
    for _ in range(4):
      stats = video_only(stats)
    for name in ('va_to_vat',) + (('fac_bn',) if graph == 'fac_bnrelu' else ()):
      jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                   with_loud[name], stats['heads'][name])
      moved = jax.tree.map(lambda a, b: not np.allclose(a, b),
                           variables['batch_stats']['heads'][name], with_loud[name])
      assert any(jax.tree.leaves(moved))  # The video did train these statistics.


@pytest.mark.slow
@pytest.mark.parametrize('graph', ['fac_relu', 'fac_bnrelu'])
def test_audio_reaches_vat_with_the_videos_statistics(config, graph):
  """At evaluation, audio → S_vat is the video's second head, in inference mode, even when
  `embed_audio` is called with train=True (the statistics are the video's)."""
  config.model.head = graph
  model = mmv_model.build_model(config.model, vocab_size=50)
  video, audio, text = _inputs(config, 4)
  audio = jax.random.normal(jax.random.key(2), audio.shape)
  variables = model.init(jax.random.key(0), {'video': video, 'audio': audio, 'text': text}, train=False)
  _, audio_va, audio_vat = model.apply(variables, audio, method=model.embed_audio)
  head_vars = {k: v['heads'] for k, v in variables.items()}
  expected = heads.Heads(graph, config.model.va_dim, config.model.vat_dim).apply(
      head_vars, audio_va, method=heads.Heads.audio_to_vat)
  np.testing.assert_allclose(audio_vat, expected, rtol=1e-5, atol=1e-6)
  (_, _, vat_train), updates = model.apply(variables, audio, True, method=model.embed_audio,
                                           mutable=['batch_stats'])
  for name in ('va_to_vat',) + (('fac_bn',) if graph == 'fac_bnrelu' else ()):
    jax.tree.map(np.testing.assert_array_equal, updates['batch_stats']['heads'][name],
                 variables['batch_stats']['heads'][name])
  assert jnp.all(jnp.isfinite(vat_train))
