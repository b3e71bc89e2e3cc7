"""`mmv.inference.Model.embed_images`: images through the evaluation pipeline, as the image
benchmarks read them, into the deflated video tower.

Each image (a file or a uint8 array [H, W, 3]) is read by `mmv.data.images` (Pillow, the short
side resized to the model's `short_side`, one JPEG frame), becomes a 1-frame record and is read
by the evaluation pipeline (`num_frames` 1: central crop at `data.crop_size`, the run's
normalisation), then embedded by the checkpoint's image model (`Checkpoint.image_restored`).
"""

import os

import numpy as np

from mmv import media_inputs
from mmv.ingest import images as image_ops

# What a 1-frame image record is read with (the image benchmarks' clip settings).
IMAGE_CLIP = dict(num_frames=1, frame_stride=1, fps=image_ops.FPS)


def refitted(config):
  """Whether `config` is a deflated model's (a workdir of mmv.tools.deflate: BN re-fitted)."""
  return bool(config.model.get('deflated', False))


def image_tower(config):
  if refitted(config):
    return 'deflated workdir (BN re-fitted)'
  return 'video model deflated on loading (no BN re-fit)'


def read(inputs, short_side):
  """The `media.Clip`s of image paths or arrays (one or a list); `UnreadableInput` naming the
  first that is not an image."""
  if isinstance(inputs, (str, os.PathLike, np.ndarray)):
    inputs = [inputs]
  if not len(inputs):
    raise ValueError('nothing to embed: no images')
  clips = []
  for i, x in enumerate(inputs):
    try:
      clips.append(image_ops.read_image(x, short_side=short_side))
    except image_ops.ImageError as e:
      name = os.fspath(x) if isinstance(x, (str, os.PathLike)) else f'image array {i}'
      raise media_inputs.UnreadableInput(f'{name}: {e}') from None
  return clips


def embed(model, inputs, batch_size=None):
  """Per-image arrays ('features' [N, 1, D], 'video_va', 'video' [N, 1, ·]) of `inputs` by
  `model` (an `mmv.inference.Model`)."""
  checkpoint = model.checkpoint
  if not hasattr(checkpoint.image_restored[0], 'embed_image'):
    raise ValueError(f'the model (method {model.config.get("method", "mmv")!r}) has no '
                     'image embedding: deflation serves MMV, GDT and XDC models')
  clips = read(inputs, model.short_side)
  data = model.data_config('video', 1, '')
  for k, v in IMAGE_CLIP.items():
    data[k] = v
  batch_size = model.videos_per_batch(batch_size, 1, len(clips))
  embed_fn = checkpoint.embed_fn('image', with_text=False, spaces=True)
  per_clip, _, failed = model.extract(clips, data, embed_fn, checkpoint.image_restored,
                                      batch_size, image_ops.FPS)
  if failed:
    raise media_inputs.UnreadableInput(f'{len(failed)} images could not be read by the '
                                       f'pipeline (input {failed[0]} first)')
  return per_clip
