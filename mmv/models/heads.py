"""Projection heads into the shared spaces S_va (video–audio) and S_vat (video–audio–text).

Graphs of the MMV paper, with the head settings of the released checkpoints:
  shared     one linear head per modality into a single space of `vat_dim`;
  disjoint   separate heads per pair, all from the backbones: video→S_va (MLP + BN),
             video→S_vt (linear + BN), audio→S_va (linear), text→S_vt (linear);
  fac_relu / fac_bnrelu
             fine-and-coarse: video→S_va (MLP + BN), then ReLU (or BN+ReLU), then → S_vat
             (linear + BN); audio→S_va (linear); text→S_vat (linear). At evaluation audio reaches
             S_vat through the video's second head; in training only the video passes through
             it, so only the video's statistics enter its BatchNorm (and fac_bnrelu's).
MLP = Linear → BN → ReLU → Linear. As in the reference, the last Linear of an MLP has no bias
when BN follows it, while a linear head keeps its bias even then.

Every graph returns the same four embeddings, so the losses need not know the graph:
video_va, audio_va (the NCE pair) and video_vt, text_vt (the MIL-NCE pair).

A model of two towers (`towers`: video and audio, or video and text) has only the heads of its
pair: `shared` and `disjoint` drop the other modality's (video_vt, or video_va, is then None;
`shared`'s video embedding serves the one pair it has). FAC needs all three towers. `shared`
of video and text is MIL-NCE's graph: one linear 512-d head (with bias, no BatchNorm) per
modality into one space (S3D_HowTo100M's s3dg.py `fc` and text `fc2`).
"""

import flax.linen as nn
import jax.numpy as jnp

GRAPHS = ('shared', 'disjoint', 'fac_relu', 'fac_bnrelu')
TOWERS = ('video', 'audio', 'text')


class Projection(nn.Module):
  """Linear, or MLP (Linear → BN → ReLU → Linear), optionally followed by BN."""
  dim: int
  mlp: bool = False
  bn_after: bool = False
  bn_decay: float = 0.9
  bn_eps: float = 1e-5
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    bn = lambda: nn.BatchNorm(use_running_average=not train, momentum=self.bn_decay,
                              epsilon=self.bn_eps, dtype=self.dtype)
    if self.mlp:
      x = nn.relu(bn()(nn.Dense(self.dim, dtype=self.dtype)(x)))
    x = nn.Dense(self.dim, use_bias=not (self.mlp and self.bn_after), dtype=self.dtype)(x)
    if self.bn_after:
      x = bn()(x)
    return x


class Heads(nn.Module):
  """The projection graph; each method maps one modality's backbone features."""
  graph: str = 'fac_relu'
  va_dim: int = 512
  vat_dim: int = 256
  bn_decay: float = 0.9
  bn_eps: float = 1e-5
  dtype: jnp.dtype = jnp.float32
  towers: tuple = TOWERS  # 'video' and one or both of 'audio', 'text'.

  def setup(self):
    check_towers(self.graph, self.towers)
    bn = dict(bn_decay=self.bn_decay, bn_eps=self.bn_eps, dtype=self.dtype)
    audio, text = 'audio' in self.towers, 'text' in self.towers
    if self.graph == 'shared':
      self.video_proj = Projection(self.vat_dim, **bn)
      if audio:
        self.audio_proj = Projection(self.vat_dim, **bn)
      if text:
        self.text_proj = Projection(self.vat_dim, **bn)
    elif self.graph == 'disjoint':
      if audio:
        self.video_va_proj = Projection(self.va_dim, mlp=True, bn_after=True, **bn)
        self.audio_proj = Projection(self.va_dim, **bn)
      if text:
        self.video_vt_proj = Projection(self.vat_dim, bn_after=True, **bn)
        self.text_proj = Projection(self.vat_dim, **bn)
    else:
      self.video_va_proj = Projection(self.va_dim, mlp=True, bn_after=True, **bn)
      self.va_to_vat = Projection(self.vat_dim, bn_after=True, **bn)
      if self.graph == 'fac_bnrelu':
        self.fac_bn = nn.BatchNorm(momentum=self.bn_decay, epsilon=self.bn_eps, dtype=self.dtype)
      self.audio_proj = Projection(self.va_dim, **bn)
      self.text_proj = Projection(self.vat_dim, **bn)

  def _va_to_vat(self, x, train):
    if self.graph == 'fac_bnrelu':
      x = self.fac_bn(x, use_running_average=not train)
    return self.va_to_vat(nn.relu(x), train)

  def video(self, features, train):
    """→ (video_va, video_vt)."""
    if self.graph == 'shared':
      z = self.video_proj(features, train)
      return z, z
    if self.graph == 'disjoint':
      va = self.video_va_proj(features, train) if 'audio' in self.towers else None
      vt = self.video_vt_proj(features, train) if 'text' in self.towers else None
      return va, vt
    va = self.video_va_proj(features, train)
    return va, self._va_to_vat(va, train)

  def audio(self, features, train):
    """→ audio_va (shared: its single space)."""
    return self.audio_proj(features, train)

  def audio_to_vat(self, audio_va):
    """Audio in S_vat, for evaluation: FAC goes through the video's second head in inference
    mode, normalised with the video's moving averages (the released models map audio into
    S_vat only outside training, so audio never updates that head's BatchNorm statistics);
    `shared` is already there; `disjoint` has no audio–text space, so None."""
    if self.graph.startswith('fac'):
      return self._va_to_vat(audio_va, train=False)
    return audio_va if self.graph == 'shared' else None

  def text(self, features, train):
    """→ text_vt."""
    return self.text_proj(features, train)


def check_towers(graph, towers):
  """Clear errors for a graph name or a set of towers the heads cannot be built for."""
  if graph not in GRAPHS:
    raise ValueError(f'unknown head graph {graph!r}; choose from {GRAPHS}')
  towers = tuple(towers)
  if not set(towers) <= set(TOWERS) or 'video' not in towers or len(set(towers)) < 2:
    raise ValueError(f'towers {towers}: the video tower and one or both of audio, text')
  if graph.startswith('fac') and len(set(towers)) < 3:
    raise ValueError(f'head graph {graph!r} (fine-and-coarse) needs the video, audio and text '
                     f"towers, got {towers}; two towers use 'shared' or 'disjoint'")
