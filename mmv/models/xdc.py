"""XDC's model (Alwassel et al. 2020): a video and an audio encoder, each with linear
classifiers over the clusters of the round (`mmv.methods.xdc`).

The encoders are the backbones of `mmv.models.mmv` (chosen by name from its tables, with
`config.model`'s options); their pooled features are what is clustered, what the classifiers
read, and what evaluation's linear probe uses. A classifier `head_<tower>_<clustering>` (a Dense
layer, float32 logits) predicts the clusters of `clustering` ('video', 'audio' or 'joint') from
`tower`'s features; every round re-initialises them (params starting with `HEAD_PREFIX`).
"""

import flax.linen as nn
import jax.numpy as jnp

from mmv.models import mmv as mmv_model

HEAD_PREFIX = 'head_'


def head_name(tower, clustering):
  return f'{HEAD_PREFIX}{tower}_{clustering}'


def logits_key(tower, clustering):
  return f'logits_{tower}_{clustering}'


class XDC(nn.Module):
  video_backbone: nn.Module
  audio_backbone: nn.Module
  heads: tuple  # ((tower, clustering, number of clusters), ...)

  @nn.compact
  def __call__(self, batch, train):
    """{'logits_<tower>_<clustering>': float32 [B, k]} of the batch's video and audio."""
    features = {'video': self.embed_video(batch['video'], train)[0],
                'audio': self.embed_audio(batch['audio'], train)[0]}
    return {logits_key(tower, clustering): nn.Dense(k, name=head_name(tower, clustering))(
        features[tower]).astype(jnp.float32) for tower, clustering, k in self.heads}

  def embed_video(self, video, train=False):
    """[B, T, H, W, 3] → (features [B, F] float32, None, None): XDC has no embedding space."""
    return self.video_backbone(video, train).astype(jnp.float32), None, None

  def embed_image(self, images, train=False):
    """[B, H, W, 3] → what `embed_video` gives, by the deflated video backbone
    (`model.deflated`, `mmv.models.deflate`)."""
    mmv_model.check_image_input(self.video_backbone, images)
    return self.embed_video(images, train)

  def embed_audio(self, audio, train=False):
    """[B, time, mel, 1] → (features [B, F] float32, None, None)."""
    return self.audio_backbone(audio, train).astype(jnp.float32), None, None


def build_model(model_config, heads):
  """The XDC module: backbones named by `model_config` (as MMV's), `heads` as `XDC.heads`."""
  c = model_config
  return XDC(video_backbone=mmv_model.build_backbone(c, 'video'),
             audio_backbone=mmv_model.build_backbone(c, 'audio'),
             heads=tuple(heads))
