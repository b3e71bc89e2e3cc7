"""GDT's audio-visual model (Patrick et al. 2021, facebookresearch/GDT model.py class GDT):
a video and an audio backbone, each followed by an MLP head into a 256-d space, L2-normalised.

Facts from the reference (model.py):
- backbones: R(2+1)D-18 for video (`vid_base_arch` 'r2plus1d_18', features 512 after the
  global pool) and ResNet-9 for audio (`aud_base_arch` 'resnet9', 512); here any backbone of
  `mmv.models.mmv`'s tables (configs choose 'r2plus1d_18' and 'audio_resnet9');
- head (`MLP`, with `use_mlp` True as scripts/pretrain_gdt_k400.sh sets it): Dropout(0.3) →
  Linear(512 → 512, no bias) → BatchNorm1d → ReLU → Dropout(0.3) → Linear(512 → 256, bias);
  one head per modality (`mlp_v`, `mlp_a`, same layout), `num_classes` 256; then
  F.normalize (`norm_feat` True).
- each view is a separate forward pass (gdt_helper.py compute_feats calls the model once per
  (video, audio) pair), so BatchNorm normalises each view's batch on its own; the same happens
  here: one backbone call per view, whose running statistics are updated in turn.

The views the loss needs (`views`, from the hypothesis): 'clip' (batch['video'], ['audio']),
'reversed' (the clip with its time axis reversed: frames, and log-mel frames), 'shifted' (the
independently sampled clip of the same record, batch['video_<shift_view>'] and
['audio_<shift_view>']) and 'shifted_reversed'. GDT reverses the decoded clip before each
view's own augmentation (datasets/GDTPretrainDataset.py: flip(0) of the frames, flip(-1) of the
spectrogram); here the reversal is done on device, after augmentation, so a clip and its
reversal share their crop and colour jitter.
"""

from typing import Tuple

import flax.linen as nn
import jax.numpy as jnp

from mmv.models import mmv as mmv_model

VIEWS = ('clip', 'reversed', 'shifted', 'shifted_reversed')


class MLPHead(nn.Module):
  """Dropout → Dense (no bias) → BN → ReLU → Dropout → Dense, then L2-normalised (float32)."""
  hidden: int = 512
  dim: int = 256
  dropout: float = 0.0
  bn_decay: float = 0.9
  bn_eps: float = 1e-5
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = nn.Dense(self.hidden, use_bias=False, dtype=self.dtype, name='hidden')(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_decay, epsilon=self.bn_eps,
                     dtype=self.dtype, name='bn')(x)
    x = nn.Dropout(self.dropout, deterministic=not train)(nn.relu(x))
    x = nn.Dense(self.dim, dtype=self.dtype, name='out')(x).astype(jnp.float32)
    return x * (1.0 / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12))


def view_inputs(batch, view, shift_view):
  """(video, audio) of `view` from the model batch; reversal is along the time axes."""
  shifted = view.startswith('shifted')
  video = batch[f'video_{shift_view}'] if shifted else batch['video']
  audio = batch[f'audio_{shift_view}'] if shifted else batch['audio']
  if view.endswith('reversed'):
    video, audio = jnp.flip(video, axis=1), jnp.flip(audio, axis=1)
  return video, audio


class GDT(nn.Module):
  """`__call__(batch, train)` → {'video_<view>', 'audio_<view>': [B, dim] unit vectors}."""
  video_backbone: nn.Module
  audio_backbone: nn.Module
  video_head: MLPHead
  audio_head: MLPHead
  views: Tuple[str, ...] = ('clip',)
  shift_view: str = 'shifted'

  def __call__(self, batch, train):
    out = {}
    for view in self.views:
      video, audio = view_inputs(batch, view, self.shift_view)
      out[f'video_{view}'] = self.embed_video(video, train)[1]
      out[f'audio_{view}'] = self.embed_audio(audio, train)[1]
    return out

  def embed_video(self, video, train=False):
    """[B, T, H, W, 3] → (backbone features [B, 512], head output [B, 256], None), float32."""
    features = self.video_backbone(video, train)
    return features.astype(jnp.float32), self.video_head(features, train), None

  def embed_image(self, images, train=False):
    """[B, H, W, 3] → what `embed_video` gives, by the deflated video backbone
    (`model.deflated`, `mmv.models.deflate`)."""
    mmv_model.check_image_input(self.video_backbone, images)
    return self.embed_video(images, train)

  def embed_audio(self, audio, train=False):
    """[B, time, mel, 1] → (backbone features, head output, None), float32."""
    features = self.audio_backbone(audio, train)
    return features.astype(jnp.float32), self.audio_head(features, train), None
