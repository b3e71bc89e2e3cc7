"""The MMV model: backbones for video, audio and text, and the projection graph.

`build_model(config.model, vocab_size)` assembles it from a config; the backbones are chosen by
name from `VIDEO_BACKBONES` and `AUDIO_BACKBONES` (explicit tables, not import side effects).
"""

import flax.linen as nn
import jax.numpy as jnp

from mmv.models import heads as heads_lib
from mmv.models import text as text_lib
from mmv.models import tiny

VIDEO_BACKBONES = {'tiny_video': tiny.TinyVideoNet}
AUDIO_BACKBONES = {'tiny_audio': tiny.TinyAudioNet}


class MMV(nn.Module):
  video_backbone: nn.Module
  audio_backbone: nn.Module
  text_backbone: nn.Module
  heads: heads_lib.Heads

  def __call__(self, video, audio, text, train):
    """Embeddings for the losses: video_va, audio_va [B, va]; video_vt [B, vt]; text_vt [B, K, vt]."""
    video_va, video_vt = self.embed_video(video, train)[1:]
    return {
        'video_va': video_va,
        'video_vt': video_vt,
        'audio_va': self.embed_audio(audio, train)[1],
        'text_vt': self.embed_text(text, train),
    }

  def embed_video(self, video, train=False):
    """[B, T, H, W, 3] → (backbone features, video_va, video_vt)."""
    features = self.video_backbone(video, train)
    return (features,) + tuple(self.heads.video(features, train))

  def embed_audio(self, audio, train=False):
    """[B, time, mel, 1] → (backbone features, audio_va, audio_vat or None for `disjoint`)."""
    features = self.audio_backbone(audio, train)
    audio_va = self.heads.audio(features, train)
    return features, audio_va, self.heads.audio_to_vat(audio_va, train)

  def embed_text(self, text, train=False):
    """[..., words] → [..., vt]: any leading shape (e.g. [B, K] captions)."""
    lead = text.shape[:-1]
    features = self.text_backbone(jnp.reshape(text, (-1, text.shape[-1])), train)
    z = self.heads.text(features, train)
    return jnp.reshape(z, lead + z.shape[-1:])


def build_model(c, vocab_size):
  """The MMV module for model config `c`."""
  bn = dict(bn_decay=c.bn_decay, bn_eps=c.bn_eps)
  for kind, name, table in (('video', c.video_backbone, VIDEO_BACKBONES),
                            ('audio', c.audio_backbone, AUDIO_BACKBONES)):
    if name not in table:
      raise ValueError(f'unknown {kind} backbone {name!r}; choose from {sorted(table)}')
  return MMV(
      video_backbone=VIDEO_BACKBONES[c.video_backbone](width=c.width, **bn),
      audio_backbone=AUDIO_BACKBONES[c.audio_backbone](width=c.width, **bn),
      text_backbone=text_lib.WordConvText(vocab_size, c.word_embedding_dim, c.text_hidden),
      heads=heads_lib.Heads(c.head, c.va_dim, c.vat_dim, **bn))
