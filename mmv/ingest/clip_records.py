"""One clip of the converter as one record of one shard, alike on both paths (local and Beam).

The decoding options (`read_options`), the shard a clip goes to (`shard_of`), the record
(`make_example`), the report of a conversion and its error. TensorFlow is imported inside
`make_example`: the local converter's decoding workers import this module and need only PyAV.
"""

import hashlib
import json
import os

import numpy as np

from mmv.data import format as fmt


class ConversionError(ValueError):
  """A conversion refused before it changed anything in the output directory."""


def shard_of(spec, num_shards):
  """The shard of a clip: a hash (SHA-256, the same on every machine and Python run, unlike
  `hash`) of what the input says of it: name, times, labels and captions, not the file's path
  (the same list converted from another directory gives the same shards)."""
  key = json.dumps([spec.name, spec.start, spec.end, spec.labels, spec.captions,
                    spec.caption_starts, spec.caption_ends])
  return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], 'big') % num_shards


def read_options(*, fps=fmt.DEFAULT_FPS, short_side=256, sample_rate=int(fmt.DEFAULT_SAMPLE_RATE),
                 jpeg_qscale=3, audio=True, min_clip_fraction=0.5, require_audio=False):
  """The keyword arguments of `media.read_clip_or_reason`: one place for both paths, local
  (`convert.convert`) and Beam (`convert_beam.run`, which passes its own keyword arguments
  here), so that they decode alike; ConversionError for options that cannot work together."""
  if not 0 <= min_clip_fraction <= 1:
    raise ConversionError(f'min_clip_fraction {min_clip_fraction} is not a fraction (0 to 1)')
  if require_audio and not audio:
    raise ConversionError('require_audio asks for the audio that audio=False leaves out')
  return dict(fps=fps, short_side=short_side, sample_rate=sample_rate, qscale=jpeg_qscale,
              audio=audio, min_clip_fraction=min_clip_fraction, require_audio=require_audio)


def report_name(name):
  """The report file of split `name`: not `name-*-of-*`, so no reader takes it for a shard."""
  return f'{name}.report.json'


def report_text(report):
  """The report file's content: JSON of what `convert.format_report` prints, shards by file
  name."""
  return json.dumps({
      'written': report['written'],
      'shards': [os.path.basename(path) for path in report['shards']],
      'skipped': [list(item) for item in report['skipped']],
      'short': [list(item) for item in report['short']],
      'packets_skipped': [list(item) for item in report['packets_skipped']],
      'audio_clipped': [list(item) for item in report.get('audio_clipped', [])],
  }, indent=1) + '\n'


def int16_samples(waveform):
  """float samples → (int16 PCM, how many were outside [−1, 32767/32768] and clipped)."""
  scaled = np.round(np.asarray(waveform, np.float64) * fmt.INT16_SCALE)
  clipped = int(np.count_nonzero((scaled < -32768) | (scaled > 32767)))
  return np.clip(scaled, -32768, 32767).astype('<i2'), clipped


def clipped_samples(clip, audio_format):
  """Samples of `clip`'s waveform that `audio_format` cannot hold (clipped when stored)."""
  if audio_format != 'int16' or clip.waveform is None:
    return 0
  return int16_samples(clip.waveform)[1]


def waveform_of(example):
  """The float waveform a SequenceExample stores, either format; None without one."""
  lists = example.feature_lists.feature_list
  if fmt.WAVEFORM_INT16 in lists and len(lists[fmt.WAVEFORM_INT16].feature):
    pcm = lists[fmt.WAVEFORM_INT16].feature[0].bytes_list.value[0]
    return np.frombuffer(pcm, '<i2').astype(np.float32) / np.float32(fmt.INT16_SCALE)
  if fmt.WAVEFORM in lists and len(lists[fmt.WAVEFORM].feature):
    return np.asarray(lists[fmt.WAVEFORM].feature[0].float_list.value, np.float32)
  return None


def check_audio_format(audio_format):
  if audio_format not in fmt.AUDIO_FORMATS:
    raise ConversionError(f'audio_format {audio_format!r} is not one of {fmt.AUDIO_FORMATS}')


def make_example(spec, clip, label_ids, *, fps, sample_rate, audio_format='float'):
  """The SequenceExample of one converted clip; its waveform as DMVR's float list or, with
  `audio_format` 'int16', as 16-bit PCM (`mmv.data.format.WAVEFORM_INT16`; samples beyond
  [−1, 1) clipped: `clipped_samples` counts them)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  _bytes, _ints, _floats = fmt.bytes_feature, fmt.ints_feature, fmt.floats_feature
  us = lambda seconds: int(round(seconds * 1e6))
  context = {
      fmt.FILENAME: _bytes([spec.name.encode()]),
      fmt.START_US: _ints([us(clip.start)]),
      fmt.END_US: _ints([us(clip.end)]),
      fmt.FPS: _floats([fps]),
      fmt.SAMPLE_RATE: _floats([sample_rate]),
      fmt.HAS_VIDEO: _ints([int(bool(clip.jpegs))]),
      fmt.HAS_AUDIO: _ints([int(clip.waveform is not None)]),
  }
  if spec.labels:
    context[fmt.LABEL_INDEX] = _ints([label_ids[l] for l in spec.labels])
    context[fmt.LABEL_TEXT] = _bytes([l.encode() for l in spec.labels])
  if spec.captions:
    context[fmt.CAPTION] = _bytes([c.encode() for c in spec.captions])
  if spec.caption_starts:
    context[fmt.CAPTION_START_US] = _ints([us(s) for s in spec.caption_starts])
    context[fmt.CAPTION_END_US] = _ints([us(s) for s in spec.caption_ends])
  feature_lists = {}
  if clip.jpegs:
    feature_lists[fmt.IMAGE] = tf.train.FeatureList(feature=[_bytes([j]) for j in clip.jpegs])
  if clip.waveform is not None and audio_format == 'int16':
    pcm = int16_samples(clip.waveform)[0].tobytes()
    feature_lists[fmt.WAVEFORM_INT16] = tf.train.FeatureList(feature=[_bytes([pcm])])
  elif clip.waveform is not None:
    check_audio_format(audio_format)
    feature_lists[fmt.WAVEFORM] = tf.train.FeatureList(feature=[_floats(clip.waveform)])
  return tf.train.SequenceExample(context=tf.train.Features(feature=context),
                                  feature_lists=tf.train.FeatureLists(feature_list=feature_lists))


def nothing_written(skipped):
  """The error of a conversion that wrote no clip, naming the first inputs skipped."""
  reasons = '; '.join(f'{clip}: {reason}' for clip, reason in skipped[:3])
  more = ', ...' if len(skipped) > 3 else ''
  found = f'all {len(skipped)} skipped ({reasons}{more})' if skipped else 'none listed'
  return ConversionError(f'no clip to write: {found}; nothing was changed')
