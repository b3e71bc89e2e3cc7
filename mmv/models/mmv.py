"""The MMV model: backbones for video, audio and text, and the projection graph.

`build_model(config.model, vocab_size)` assembles it from a config; the backbones are chosen by
name from `VIDEO_BACKBONES` and `AUDIO_BACKBONES` (explicit tables, not import side effects),
whose entries built without arguments are the paper's networks. With `model.deflated` the video
backbone is built in its image mode (`mmv.models.deflate`) and `embed_image` embeds photos.
`model.towers` keeps the video tower and one or both of audio and text: the paper's "VA only"
models (video and audio, NCE alone) and MIL-NCE's (video and text) have no backbone, head or
loss term of the third.
"""

import functools

import flax.linen as nn
import jax.numpy as jnp

from mmv.models import heads as heads_lib
from mmv.models import r2plus1d
from mmv.models import resnet
from mmv.models import resnet_v1
from mmv.models import s3d
from mmv.models import text as text_lib
from mmv.models import tiny
from mmv.models import tsm_resnet

VIDEO_BACKBONES = {
    'tiny_video': tiny.TinyVideoNet,
    's3d_g': s3d.S3DG,
    'tsm_resnet50': functools.partial(tsm_resnet.TSMResNet, width=1),
    'tsm_resnet50x2': functools.partial(tsm_resnet.TSMResNet, width=2),
    'r2plus1d_18': r2plus1d.R2Plus1D18,
}
AUDIO_BACKBONES = {
    'tiny_audio': tiny.TinyAudioNet,
    'audio_resnet50': functools.partial(resnet.ResNetV2, depth=50),
    'audio_resnet18': functools.partial(resnet.ResNetV2, depth=18),
    'audio_resnet9': functools.partial(resnet_v1.ResNetV1, depth=9),
}
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


class MMV(nn.Module):
  video_backbone: nn.Module
  audio_backbone: nn.Module | None  # None: no audio tower.
  text_backbone: nn.Module | None  # None: no text tower.
  heads: heads_lib.Heads

  def __call__(self, batch, train):
    """Embeddings of a batch's video, audio and text (captions) for the losses: video_va,
    audio_va [B, va] (with an audio tower); video_vt [B, vt], text_vt [B, K, vt] (with a text
    tower).

    Always float32, whatever the compute dtype, so the losses are computed in float32.
    """
    video_va, video_vt = self.embed_video(batch['video'], train)[1:]
    out = {}
    if self.audio_backbone is not None:
      # Audio goes no further than S_va here: its way on into S_vat (embed_audio) is the
      # video's second head, whose BatchNorm statistics must be the video's alone.
      audio_va = self.heads.audio(self.audio_backbone(batch['audio'], train), train)
      out.update(video_va=video_va, audio_va=audio_va.astype(jnp.float32))
    if self.text_backbone is not None:
      out.update(video_vt=video_vt, text_vt=self.embed_text(batch['text'], train))
    return out

  def embed_video(self, video, train=False):
    """[B, T, H, W, 3] → (backbone features, video_va, video_vt), float32."""
    features = self.video_backbone(video, train)
    return _float32((features,) + tuple(self.heads.video(features, train)))

  def embed_image(self, images, train=False):
    """[B, H, W, 3] (normalised as video frames are) → (backbone features, image_va, image_vt),
    float32, through the video heads; the video backbone must be deflated (`model.deflated`)."""
    check_image_input(self.video_backbone, images)
    return self.embed_video(images, train)

  def embed_audio(self, audio, train=False):
    """[B, time, mel, 1] → (backbone features, audio_va, audio_vat or None for `disjoint`).

    audio_vat always uses the S_va → S_vat head in inference mode (see Heads.audio_to_vat).
    """
    _check_tower(self.audio_backbone, 'audio')
    features = self.audio_backbone(audio, train)
    audio_va = self.heads.audio(features, train)
    return _float32((features, audio_va, self.heads.audio_to_vat(audio_va)))

  def embed_text(self, text, train=False):
    """[..., words] → [..., vt]: any leading shape (e.g. [B, K] captions)."""
    _check_tower(self.text_backbone, 'text')
    lead = text.shape[:-1]
    features = self.text_backbone(jnp.reshape(text, (-1, text.shape[-1])), train)
    z = self.heads.text(features, train)
    return jnp.reshape(z, lead + z.shape[-1:]).astype(jnp.float32)


def check_image_input(backbone, images):
  """Clear errors for images that a backbone cannot embed (it is not deflated, or they are not
  [B, H, W, 3])."""
  if not getattr(backbone, 'deflated', False):
    raise ValueError('embed_image needs the deflated video backbone (model.deflated; '
                     'mmv.models.deflate maps a video model\'s variables onto it)')
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f'images must be [B, H, W, 3], got {list(images.shape)}')


def _check_tower(backbone, name):
  if backbone is None:
    raise ValueError(f'the model has no {name} tower (model.towers)')


def _float32(arrays):
  return tuple(None if x is None else x.astype(jnp.float32) for x in arrays)


def backbone_options(c, name):
  """Keyword arguments of backbone `name` from model config `c`."""
  common = dict(bn_decay=c.bn_decay, bn_eps=c.bn_eps, dtype=DTYPES[c.dtype])
  if name.startswith('tiny'):
    return dict(width=c.width, **common)
  options = dict(width_multiplier=c.width_multiplier, remat=c.remat, **common)
  if name == 's3d_g':
    options['space_to_depth'] = c.space_to_depth
  return options


def build_backbone(c, kind):
  """The `kind` ('video' | 'audio') backbone that model config `c` names (every method's)."""
  if c.dtype not in DTYPES:
    raise ValueError(f'unknown model.dtype {c.dtype!r}; choose from {sorted(DTYPES)}')
  name, table = ((c.video_backbone, VIDEO_BACKBONES) if kind == 'video'
                 else (c.audio_backbone, AUDIO_BACKBONES))
  if name not in table:
    raise ValueError(f'unknown {kind} backbone {name!r}; choose from {sorted(table)}')
  options = backbone_options(c, name)
  if kind == 'video' and c.get('deflated', False):  # Configs older than deflation lack it.
    options['deflated'] = True
  return table[name](**options)


def towers(c):
  """The towers of model config `c` (configs written before `model.towers`: all three)."""
  return tuple(c.get('towers', heads_lib.TOWERS))


def build_model(c, vocab_size):
  """The MMV module for model config `c` (`vocab_size` is unused without a text tower)."""
  names = towers(c)
  heads_lib.check_towers(c.head, names)
  dtype = DTYPES[c.dtype]
  text = None
  if 'text' in names:
    text = text_lib.WordConvText(vocab_size, c.word_embedding_dim, c.text_hidden,
                                 frozen_embeddings=bool(c.word2vec), dtype=dtype)
  return MMV(
      video_backbone=build_backbone(c, 'video'),
      audio_backbone=build_backbone(c, 'audio') if 'audio' in names else None,
      text_backbone=text,
      heads=heads_lib.Heads(c.head, c.va_dim, c.vat_dim, bn_decay=c.bn_decay, bn_eps=c.bn_eps,
                            dtype=dtype, towers=names))
