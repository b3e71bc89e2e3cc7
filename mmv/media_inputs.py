"""What a model embeds, from files or arrays: clips decoded as the converter decodes them.

Files are decoded by `mmv.ingest.media` (PyAV) at the run's frame rate `data.fps`, the short side
resized to `short_side`, audio at `data.audio_sample_rate`, JPEG-encoded as the converter
stores frames; arrays stand for decoded media (uint8 frames [T, H, W, 3] at `data.fps`, or
float32 mono waveforms at the sample rate). `clip_times` says where the clips the evaluation
pipeline samples from such a clip lie, in seconds from the input's start.
"""

import math
import os

import numpy as np
import tensorflow as tf

from mmv.data import example as example_ops
from mmv.ingest import media
from mmv.data import video as video_ops

MODALITIES = ('video', 'audio')
JPEG_QSCALE = 3  # The converter's default (--jpeg_qscale): frames stored as for training.


class UnreadableInput(ValueError):
  """An input that gives no clip of the modality asked for."""


def default_short_side(data_config):
  """The short side files are decoded at: the run's `min_resize`, or 1.25 × the crop (the
  synthetic data's 40 px frames for 32 px crops; 250 px for the paper's 200 px crops, where the
  converter's default stores 256 px: pass short_side=256 to embed as such records are read)."""
  return int(data_config.min_resize or 2 * math.ceil(data_config.crop_size * 1.25 / 2))


def check_modality(modality):
  if modality not in MODALITIES:
    raise ValueError(f'modality must be one of {MODALITIES}, got {modality!r}')


class Inputs:
  """Reads inputs for a run whose data config is `data`, frames at `short_side` pixels."""

  def __init__(self, data, short_side=None):
    self.data = data
    self.short_side = short_side or default_short_side(data)

  def _read_clip(self, spec, audio):
    return media.read_clip_or_reason(
        spec, fps=self.data.fps, short_side=self.short_side,
        sample_rate=int(self.data.audio_sample_rate), qscale=JPEG_QSCALE, audio=audio)

  def read(self, spec, modality):
    """The `media.Clip` of `spec` (a `media.ClipSpec`) with what `modality` needs;
    `UnreadableInput` saying why when the file gives none."""
    check_modality(modality)
    clip = self._read_clip(spec, audio=modality == 'audio')
    if isinstance(clip, str):
      raise UnreadableInput(f'{spec.name}: {clip}')
    if modality == 'video' and not clip.jpegs:
      raise UnreadableInput(f'{spec.name}: no video stream')
    if modality == 'audio' and (clip.waveform is None or not clip.waveform.size):
      raise UnreadableInput(f'{spec.name}: no audio stream')
    return clip

  def read_media(self, spec):
    """(modality, `media.Clip`) of a media file: 'video' with its frames if it has any, else
    'audio' with its waveform; `UnreadableInput` saying why when it has neither."""
    clip = self._read_clip(spec, audio=False)
    if isinstance(clip, str):
      raise UnreadableInput(f'{spec.name}: {clip}')
    if clip.jpegs:
      return 'video', clip
    if clip.waveform is None or not clip.waveform.size:
      raise UnreadableInput(f'{spec.name}: no frames and no sound')
    return 'audio', clip

  def clip_of_array(self, array, modality):
    """The `media.Clip` of decoded media: uint8 frames [T, H, W, 3] at `data.fps` (resized so
    the short side is `short_side`, as files are) or a float32 waveform at the sample rate."""
    array = np.asarray(array)
    if modality == 'video':
      if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8 or not len(array):
        raise ValueError(f'video arrays must be uint8 [T, H, W, 3] frames, got {array.dtype} '
                         f'{list(array.shape)}')
      height, width = array.shape[1:3]
      scale = self.short_side / min(height, width)
      size = [max(2, round(height * scale)), max(2, round(width * scale))]
      frames = tf.cast(tf.round(tf.image.resize(array, size, method='area')),
                       tf.uint8)
      jpegs = [tf.io.encode_jpeg(f, quality=95).numpy() for f in frames]
      return media.Clip(jpegs=jpegs, waveform=None, start=0.0, end=len(jpegs) / self.data.fps)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.floating) or not array.size:
      raise ValueError(f'audio arrays must be float mono waveforms [samples], got {array.dtype} '
                       f'{list(array.shape)}')
    return media.Clip(jpegs=[], waveform=array.astype(np.float32), start=0.0,
                      end=array.size / self.data.audio_sample_rate)

  def clips(self, inputs, modality):
    """The `media.Clip`s of paths and arrays (one or a list), in their order."""
    if isinstance(inputs, (str, os.PathLike, np.ndarray)):
      inputs = [inputs]
    clips = []
    for x in inputs:
      if isinstance(x, (str, os.PathLike)):
        path = os.fspath(x)
        spec = media.ClipSpec(name=path, path=path if os.path.exists(path) else None, start=0.0,
                              end=None)
        clips.append(self.read(spec, modality))
      else:
        clips.append(self.clip_of_array(x, modality))
    return clips

  def clip_times(self, clip, modality, clips):
    """(start, end) seconds [clips, 2] of the clips the pipeline samples from `clip`."""
    d = self.data
    seconds = example_ops.clip_seconds(d)
    if modality == 'video':
      span = (d.num_frames - 1) * d.frame_stride + 1
      available, rate = len(clip.jpegs), d.fps
    else:
      span, available = int(round(seconds * d.audio_sample_rate)), clip.waveform.size
      rate = d.audio_sample_rate
    offsets = video_ops.clip_offsets(available, span, num_clips=clips, train=False,
                                     seed=None).numpy()
    starts = clip.start + offsets / rate
    return np.stack([starts, np.minimum(starts + seconds, clip.end)], axis=1).astype(np.float32)
