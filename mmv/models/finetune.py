"""The fine-tuned model: a video backbone and a linear classifier (`mmv.methods.finetune`).

The backbone is built by name as every method builds it (`mmv.models.mmv.build_backbone`) and
sits under the same name, `video_backbone`, so a pretrained run's backbone variables are copied
in as they are. Its pooled features go through dropout (`dropout`, training only) into a Dense
layer `classifier` (float32 logits). With `batch_norm='frozen'` the backbone's BatchNorm layers
normalise with their (pretrained) moving statistics in training too and never update them;
their scale and offset still train. 'train' normalises with the batch's statistics (over the
global batch) and updates the moving ones, as pretraining did.
"""

import flax.linen as nn
import jax.numpy as jnp

from mmv.models import mmv as mmv_model

BATCH_NORM = ('train', 'frozen')
CLASSIFIER = 'classifier'
BACKBONE = 'video_backbone'


class FineTune(nn.Module):
  video_backbone: nn.Module
  num_classes: int
  dropout: float = 0.0
  batch_norm: str = 'train'

  def __call__(self, batch, train):
    """{'logits': float32 [B, num_classes]} of the batch's video."""
    return {'logits': self.classify(batch['video'], train)}

  @nn.compact
  def classify(self, video, train=False):
    """[B, T, H, W, 3] → float32 logits [B, num_classes]."""
    features = self.embed_video(video, train)[0]
    features = nn.Dropout(self.dropout, deterministic=not train or not self.dropout)(features)
    return nn.Dense(self.num_classes, name=CLASSIFIER)(features).astype(jnp.float32)

  def embed_video(self, video, train=False):
    """[B, T, H, W, 3] → (pooled backbone features [B, F] float32, None, None): no embedding
    space, so the linear probe of `mmv.evaluate` reads a fine-tuned workdir too."""
    bn_train = train and self.batch_norm == 'train'
    return self.video_backbone(video, bn_train).astype(jnp.float32), None, None

  def embed_image(self, images, train=False):
    """[B, H, W, 3] → what `embed_video` gives, by the deflated video backbone."""
    mmv_model.check_image_input(self.video_backbone, images)
    return self.embed_video(images, train)


def build_model(model_config, num_classes, dropout=0.0, batch_norm='train'):
  return FineTune(video_backbone=mmv_model.build_backbone(model_config, 'video'),
                  num_classes=int(num_classes), dropout=float(dropout), batch_norm=batch_norm)
