"""Reading clips from media files with PyAV (FFmpeg's libraries; no ffmpeg binary needed).

Used by the converter's worker processes, so it imports neither TensorFlow nor JAX. Frames are
resampled to a fixed rate (each output time takes the latest source frame at or before it),
resized so the short side has a given length and encoded as JPEG; audio is resampled to a
fixed rate, mixed down to mono float32. Both seek to the clip start rather than decoding the
file from its beginning.
"""

import dataclasses
import fractions
import math
from typing import Optional

import av
import numpy as np


class MediaError(ValueError):
  """A file that cannot give the clip asked for."""


@dataclasses.dataclass(frozen=True)
class ClipSpec:
  """A clip to convert: `name` as the input listed it, `path` to open, times in seconds."""
  name: str
  path: Optional[str]  # None when no file was found for the name.
  start: float
  end: Optional[float]  # None: to the end of the file.
  labels: tuple = ()
  captions: tuple = ()
  caption_starts: tuple = ()  # Seconds, one per caption, for narrated videos.
  caption_ends: tuple = ()


@dataclasses.dataclass
class Clip:
  jpegs: list  # One JPEG per frame at the requested rate; empty for audio-only files.
  waveform: Optional[np.ndarray]  # float32 mono; None for files without an audio track.
  start: float
  end: float
  packets_skipped: int = 0  # Packets FFmpeg could not decode, skipped (audio: silence there).
  short: Optional[str] = None  # 'short: 6 of 30 frames' when the file ends before the clip.


def time_error(start, end):
  """Why [start, end] seconds (end None: the end of the file) cannot be a clip, or None.

  Checked before decoding: a negative start would be padded with the first frame and silence,
  a NaN cannot be a frame index, and an inverted range is not "outside the file".
  """
  if not math.isfinite(start) or start < 0:
    return f'start {start} s is not a time in the file (0 s or later)'
  if end is not None and not math.isfinite(end):
    return f'end {end} s is not a time in the file'
  if end is not None and end <= start:
    return f'end {end} s is not after start {start} s'
  return None


def _video_stream(container):
  """The first video stream that is not a still (an MP3's cover art is a 'video' stream)."""
  for stream in container.streams.video:
    if not stream.disposition & av.stream.Disposition.attached_pic:
      return stream
  return None


def _seek(container, stream, seconds):
  if seconds > 0:
    container.seek(int(seconds / stream.time_base), stream=stream, backward=True)


class _JpegEncoder:
  """Encodes frames as JPEG with FFmpeg's MJPEG encoder (every packet is a JPEG image)."""

  def __init__(self, width, height, qscale):
    self.width, self.height = width, height
    self._codec = av.codec.CodecContext.create('mjpeg', 'w')
    self._codec.width, self._codec.height = width, height
    self._codec.pix_fmt = 'yuvj420p'  # Full-range 4:2:0, what JPEG decoders expect.
    self._codec.time_base = fractions.Fraction(1, 1000)
    self._codec.options = {'qmin': str(qscale), 'qmax': str(qscale)}
    self._codec.open()
    self._pts = 0

  def __call__(self, frame):
    frame = frame.reformat(self.width, self.height, 'yuvj420p', interpolation='AREA')
    # PyAV rescales pts from the frame's time base to the codec's: count in the codec's.
    frame.time_base = self._codec.time_base
    frame.pts = self._pts
    self._pts += 1
    return bytes(self._codec.encode(frame)[0])


def _output_size(width, height, short_side):
  scale = short_side / min(width, height) if short_side else 1.0
  even = lambda x: max(2, int(round(x * scale / 2)) * 2)  # 4:2:0 needs even sides.
  return even(width), even(height)


def read_frames(container, stream, start, end, *, fps, short_side, qscale):
  """JPEGs of the frames at start + k/fps for every such time before `end` (None: the end)."""
  end = math.inf if end is None else end
  encoder = _JpegEncoder(*_output_size(stream.codec_context.width, stream.codec_context.height,
                                       short_side), qscale)
  jpegs, k, held, held_jpeg = [], 0, None, None

  def hold_until(t):
    nonlocal k, held_jpeg
    while start + k / fps < min(t, end):
      held_jpeg = held_jpeg or encoder(held)
      jpegs.append(held_jpeg)
      k += 1

  _seek(container, stream, start)
  for frame in container.decode(stream):
    if frame.time is None:
      continue
    if held is None:
      held = frame  # Output times before the first decoded frame take that frame.
    hold_until(frame.time)  # Output times before this frame are done: they take `held`.
    if start + k / fps >= end:
      break
    if frame is not held:
      held, held_jpeg = frame, None
  if held is not None:  # The file ended: the last frame lasts one source frame period.
    rate = stream.average_rate or fps
    hold_until(held.time + 1 / float(rate))
  return jpegs


def read_audio(container, stream, start, end, *, sample_rate):
  """float32 mono samples at `sample_rate` from `start` to `end` (None: the end)."""
  resampler = av.AudioResampler(format='flt', layout='mono', rate=sample_rate)
  chunks, first_time = [], None
  _seek(container, stream, start)
  for frame in container.decode(stream):
    if first_time is None:
      first_time = start if frame.time is None else frame.time
    chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    if end is not None and frame.time is not None and frame.time >= end:
      break
  chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
  if first_time is None:
    return np.zeros([0], np.float32)
  samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros([0], np.float32)
  # Sample i is at first_time + i / rate; a track starting after `start` is padded with silence.
  skip = int(round((start - first_time) * sample_rate))
  samples = np.concatenate([np.zeros([max(-skip, 0)], np.float32), samples[max(skip, 0):]])
  if end is not None:
    samples = samples[:int(round((end - start) * sample_rate))]
  return samples


def duration(container):
  if container.duration is not None:
    return container.duration / av.time_base
  return None


def read_clip(spec, *, fps, short_side, sample_rate, qscale, audio=True):
  """The clip of `spec` as a `Clip`; `MediaError` (or PyAV's errors) when it cannot be read.

  audio=False leaves out the soundtrack of files that have frames (a video benchmark needs no
  waveform, which would take more room than the JPEGs); audio-only files keep theirs.
  """
  reason = time_error(spec.start, spec.end)
  if reason:
    raise MediaError(reason)
  if spec.path is None:
    raise MediaError('no such file')
  with av.open(spec.path) as container:
    length = duration(container)
    has_video = _video_stream(container) is not None
    has_audio = bool(container.streams.audio) and (audio or not has_video)
  if not has_video and not has_audio:
    raise MediaError('no audio or video stream')
  end = spec.end if spec.end is not None else length
  if length is not None and end is not None:
    end = min(end, length)
  if end is not None and end <= spec.start:
    raise MediaError(f'the clip [{spec.start}, {spec.end}] s is outside the file '
                     f'({length or 0:.2f} s long)')
  jpegs, waveform = [], None
  if has_video:
    with av.open(spec.path) as container:
      jpegs = read_frames(container, _video_stream(container), spec.start, end, fps=fps,
                          short_side=short_side, qscale=qscale)
    if not jpegs:
      raise MediaError(f'no frames between {spec.start} and {end} s')
  if has_audio:
    with av.open(spec.path) as container:
      waveform = read_audio(container, container.streams.audio[0], spec.start, end,
                            sample_rate=sample_rate)
  if end is None:
    end = spec.start + (len(jpegs) / fps if has_video else len(waveform) / sample_rate)
  return Clip(jpegs=jpegs, waveform=waveform, start=spec.start, end=end)


def read_clip_or_reason(spec, **options):
  """`read_clip`, with a failure returned as its reason: the worker function of the pool."""
  try:
    return read_clip(spec, **options)
  except (av.error.FFmpegError, OSError, MediaError) as e:
    return f'{type(e).__name__}: {e}'
