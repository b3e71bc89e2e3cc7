"""BraVe (Recasens et al. 2021, "Broaden Your Views for Self-Supervised Video Learning").

A narrow view (a short, high-resolution video clip) and a broad view (a clip several times
longer, at lower resolution, and/or its audio) of one video each go through their own backbone;
one projector + predictor head, shared by every backbone, maps features f to a projection z and
a prediction h, and each view's h regresses the other view's z (the loss is in
mmv/methods/brave.py).

Facts from google-deepmind/brave (commit 0ae20d9):
- brave/models/brave/modules.py: `Projector` is Linear(4096) → BN → ReLU → Linear(output_dims)
  → BN; `Predictor` is Linear(4096) → BN → ReLU → Linear(output_dims), no BN at the end; both
  Linears keep their bias (hk.Linear's default). `ProjectAndPredict` returns (z, h) =
  (projector(f), predictor(projector(f))). BatchNorm: decay 0.9, Haiku's eps 1e-5, scale and
  offset, cross-replica (statistics of the global batch).
- brave/models/brave/brave.py: the four cross-view functions (b_video_to_n_video, ...) all build
  `ProjectAndPredict(name='shared_project')` in a transform of their own, so in training one set
  of head weights serves every view ("shared_project"; the init transform also creates unused
  copies shared_project_1, ... which no apply reads). Backbones are separate per view:
  narrow_video_embedding and broad_video_embedding (TSM-ResNetV2, width multiplier
  `tsm_resnet_width_multiplier`), broad_audio_embedding (ResNetV2-50 on the log-mel spectrogram
  [B, time, bins] with a channel axis added). The loss calls, in order: narrow backbone; broad
  video backbone, head(broad video), head(narrow); broad audio backbone, head(broad audio),
  head(narrow) — the head's BatchNorm averages are updated in that order here too.
- The released evaluation (brave/evaluate_video_embeddings.py) embeds a video with the narrow
  backbone alone, in inference mode, frames scaled to [0, 1].
"""

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp


class _MLP(nn.Module):
  """Linear(hidden) → BN → ReLU → Linear(out), then BN if `bn_out`; named as the importer maps."""
  hidden_dim: int
  output_dim: int
  bn_out: bool
  bn_decay: float = 0.9
  bn_eps: float = 1e-5
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    bn = lambda name: nn.BatchNorm(use_running_average=not train, momentum=self.bn_decay,
                                   epsilon=self.bn_eps, dtype=self.dtype, name=name)
    x = nn.Dense(self.hidden_dim, dtype=self.dtype, name='dense_0')(x)
    x = nn.relu(bn('bn_0')(x))
    x = nn.Dense(self.output_dim, dtype=self.dtype, name='dense_1')(x)
    return bn('bn_1')(x) if self.bn_out else x


class ProjectAndPredict(nn.Module):
  """features [B, F] → (z, h), each [B, output_dim]: BraVe's projector and predictor."""
  output_dim: int = 128
  hidden_dim: int = 4096
  bn_decay: float = 0.9
  bn_eps: float = 1e-5
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, features, train):
    mlp = dict(hidden_dim=self.hidden_dim, output_dim=self.output_dim, bn_decay=self.bn_decay,
               bn_eps=self.bn_eps, dtype=self.dtype)
    z = _MLP(bn_out=True, name='projector', **mlp)(features, train)
    h = _MLP(bn_out=False, name='predictor', **mlp)(z, train)
    return z, h


class Brave(nn.Module):
  """The narrow video backbone, the broad view's video and/or audio backbones, the shared head.

  `__call__(batch, train)` reads the narrow clip from `batch[narrow_key]` and the broad view from
  `batch['video']` / `batch['audio']`, and returns, for each broad modality m in (video, audio)
  that the model has, `z_broad_m`, `h_broad_m` (the head on the broad features) and `z_narrow_m`,
  `h_narrow_m` (the head on the narrow features, called once per pair as the reference does).
  """
  narrow_video: nn.Module
  broad_video: Optional[nn.Module]
  broad_audio: Optional[nn.Module]
  head: ProjectAndPredict
  narrow_key: str = 'video_narrow'

  def __call__(self, batch, train):
    f_narrow = self.narrow_video(batch[self.narrow_key], train)
    outputs = {}
    for modality, backbone in (('video', self.broad_video), ('audio', self.broad_audio)):
      if backbone is None:
        continue
      f_broad = backbone(batch[modality], train)
      outputs[f'z_broad_{modality}'], outputs[f'h_broad_{modality}'] = self.head(f_broad, train)
      outputs[f'z_narrow_{modality}'], outputs[f'h_narrow_{modality}'] = self.head(f_narrow,
                                                                                   train)
    return {k: v.astype(jnp.float32) for k, v in outputs.items()}

  def embed_video(self, video, train=False):
    """[B, T, H, W, 3] → (narrow backbone features, z, None), float32: the released evaluation
    embeds videos with the narrow backbone."""
    features = self.narrow_video(video, train)
    z, _ = self.head(features, train)
    return features.astype(jnp.float32), z.astype(jnp.float32), None

  def embed_audio(self, audio, train=False):
    """[B, time, mel, 1] → (broad audio backbone features, z, None), float32."""
    if self.broad_audio is None:
      raise ValueError('this BraVe model has no audio backbone (brave.broad_audio is False)')
    features = self.broad_audio(audio, train)
    z, _ = self.head(features, train)
    return features.astype(jnp.float32), z.astype(jnp.float32), None
