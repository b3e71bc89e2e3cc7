"""Reading clips from media files with PyAV (FFmpeg's libraries; no ffmpeg binary needed).

Used by the converter's worker processes, so it imports neither TensorFlow nor JAX. Frames are
resampled to a fixed rate (each output time takes the latest source frame at or before it),
resized so the short side has a given length and encoded as JPEG; audio is resampled to a
fixed rate, mixed down to mono float32. Both seek to the clip start rather than decoding the
file from its beginning.

Decoding tolerates damage as the ffmpeg command line does: a packet FFmpeg cannot decode is
skipped (and counted) and decoding goes on; audio samples are placed by their timestamps, so a
lost packet leaves silence of its length and what follows stays in time with the frames. A
file that ends before the clip does (cut short, or shorter than listed) gives a shorter clip,
reported as `short`, or none when it fills less than `min_clip_fraction` of it. Decoded audio
is stored as FFmpeg gives it, in float: lossy codecs can exceed ±1, and nothing clips it.

Times are seconds from the file's start, not its timestamps (see `timeline`).
"""

import dataclasses
import fractions
import math
from typing import Optional

import av
import numpy as np

from mmv.ingest import timeline


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
  waveform: Optional[np.ndarray]  # float32 mono; None: no audio track, or none decodable.
  start: float
  end: float
  packets_skipped: int = 0  # Packets FFmpeg could not decode, skipped (audio: silence there).
  short: Optional[str] = None  # 'short: 6 of 30 frames' when the file ends before the clip.


@dataclasses.dataclass
class _Skips:
  """Packets of one read that FFmpeg could not decode: how many, and the first error."""
  count: int = 0
  first: Optional[str] = None

  def describe(self):
    packets = 'packet' if self.count == 1 else 'packets'
    return f' ({self.count} {packets} skipped, the first: {self.first})' if self.count else ''


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


def _seek(container, stream, seconds, origin):
  """Seeks `stream` to a key frame at or before `seconds` after `origin`; a clip from time 0
  reads from the beginning.

  MPEG-TS has no index of key frames: FFmpeg seeks it to a packet whose decoding time is at or
  before the time asked for, a key frame or not (of H.264 with B-frames, not even the first
  frame's when asked for its time), and nothing decodes before the next key frame, which may be
  seconds later. A video seek whose first packet is no key frame is made again 1, 2, 4... s
  earlier, up to the file's start.
  """
  if seconds <= 0:
    return
  back = 0.0
  while True:
    target = int((origin + seconds - back) / stream.time_base)
    container.seek(target, stream=stream, backward=True)
    if stream.type != 'video' or back > seconds:
      return
    first = next(iter(container.demux(stream)), None)
    if first is None or first.size == 0 or first.is_keyframe:
      break
    back = max(1.0, 2 * back)
  container.seek(target, stream=stream, backward=True)  # Back before the packet read.


# Packets this far past the clip's end stop a read even when none of them decodes: decoders
# reorder and delay frames by far less.
_PAST_END_SECONDS = 2.0


def _decode(container, stream, skips, end, origin):
  """(packet, its frames) of `stream` from where the container is, packet by packet, up to
  `end` seconds after `origin` (None: the end of the file) and a margin.

  A packet that FFmpeg cannot decode (e.g. `InvalidDataError` from avcodec_send_packet) gives
  no frames and is counted in `skips`, and decoding goes on, as with the ffmpeg command line;
  PyAV's own `container.decode` would raise and lose the rest of the file. The last packets
  demux yields are empty: decoding them flushes the decoder. The callers stop at the first
  frame past `end`; packets well past it stop the read too, so that undecodable packets after
  a clip neither make each clip's read run to the end of the file nor count against it.
  """
  for packet in container.demux(stream):
    if (end is not None and packet.pts is not None and
        packet.pts * packet.time_base > origin + end + _PAST_END_SECONDS):
      break
    try:
      frames = stream.codec_context.decode(packet)
    except av.error.FFmpegError as e:
      skips.count += 1
      skips.first = skips.first or f'{type(e).__name__}: {e}'
      frames = []
    yield packet, frames


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


def _before(a, b):
  """Time `a` is before time `b` (seconds), by more than float sums err: 0.56 + 0.04 (where
  a frame ends) is 0.6000000000000001, and the output time 0.6 is not before it."""
  return a < b - 1e-6


def frame_count(start, end, fps):
  """How many output times start + k/fps lie before `end`: the frames of a full clip."""
  k = max(0, math.ceil((end - start) * fps) - 1)
  while _before(start + k / fps, end):
    k += 1
  return k


def read_frames(container, stream, start, end, *, origin, fps, short_side, qscale, skips):
  """JPEGs of the frames at start + k/fps for every such time before `end` (None: the end),
  as far as the file goes; undecodable packets are counted in `skips`. Times are seconds after
  `origin` (`timeline.Timeline.origin`)."""
  end = math.inf if end is None else end
  encoder = _JpegEncoder(*_output_size(stream.codec_context.width, stream.codec_context.height,
                                       short_side), qscale)
  jpegs, k, held, held_time, held_jpeg = [], 0, None, None, None

  def hold_until(t):
    nonlocal k, held_jpeg
    while _before(start + k / fps, min(t, end)):
      held_jpeg = held_jpeg or encoder(held)
      jpegs.append(held_jpeg)
      k += 1

  _seek(container, stream, start, origin)
  for frame in (f for _, frames in _decode(container, stream, skips, end, origin) for f in frames):
    if frame.time is None:
      continue
    time = frame.time - origin
    if held is None and not _before(time, end):
      break  # No frame decodes before the clip's end: it has none (not a later one).
    if held is None:
      held, held_time = frame, time  # Output times before the first frame take that frame.
    hold_until(time)  # Output times before this frame are done: they take `held`.
    if not _before(start + k / fps, end):
      break
    if frame is not held:
      held, held_time, held_jpeg = frame, time, None
  if held is not None:  # The file ended: the last frame lasts one source frame period.
    rate = stream.average_rate or fps
    hold_until(held_time + 1 / float(rate))
  return jpegs


def read_audio(container, stream, start, end, *, origin, sample_rate, skips):
  """float32 mono samples at `sample_rate` from `start` to `end` (None: the end) seconds after
  `origin`, or None when no audio could be decoded; undecodable packets are counted in
  `skips`.

  Samples are placed by their timestamps: a gap between one decoded frame and the next (a
  packet skipped) is filled with silence of its length, as is one at the end up to where the
  packets read end; sample i of the result is at start + i / sample_rate.
  """
  rate = stream.codec_context.sample_rate
  tolerance = rate // 500  # 2 ms: timestamps rounded to ms (Matroska) are not gaps.
  mono = av.AudioResampler(format='flt', layout='mono')  # The source rate: no state, no delay.
  resampler = av.AudioResampler(format='flt', layout='mono', rate=sample_rate)
  chunks, first_time, placed, packets_end = [], None, 0, None

  def emit(samples):
    nonlocal placed
    frame = av.AudioFrame.from_ndarray(samples[None], format='flt', layout='mono')
    frame.sample_rate, frame.pts = rate, placed
    chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
    placed += len(samples)

  _seek(container, stream, start, origin)
  for packet, frames in _decode(container, stream, skips, end, origin):
    if packet.pts is not None and packet.duration:
      packets_end = max(packets_end or 0,
                        float((packet.pts + packet.duration) * packet.time_base) - origin)
    for frame in frames:
      time = None if frame.time is None else frame.time - origin
      if first_time is None:
        first_time = start if time is None else time
      samples = np.concatenate([np.zeros([0], np.float32)] +
                               [f.to_ndarray().reshape(-1) for f in mono.resample(frame)])
      at = placed if time is None else int(round((time - first_time) * rate))
      if at > placed + tolerance:
        emit(np.zeros([at - placed], np.float32))  # The samples of skipped packets.
      elif at < placed - tolerance:
        samples = samples[placed - at:]  # Overlaps what is placed: timestamps decide.
      if len(samples):
        emit(samples)
    if end is not None and any(f.time is not None and f.time - origin >= end for f in frames):
      break
  if first_time is None:
    return None
  if packets_end is not None:  # Packets skipped at the end leave silence too.
    tail = int(round((min(packets_end, math.inf if end is None else end) - first_time) * rate))
    if tail > placed + tolerance:
      emit(np.zeros([tail - placed], np.float32))
  chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
  samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros([0], np.float32)
  # Sample i is at first_time + i / rate; a track starting after `start` is padded with silence.
  skip = int(round((start - first_time) * sample_rate))
  samples = np.concatenate([np.zeros([max(-skip, 0)], np.float32), samples[max(skip, 0):]])
  if end is not None:
    samples = samples[:int(round((end - start) * sample_rate))]
  return samples


def _intended_end(stream, length):
  """Seconds the file says its video lasts, cut short or not: the video stream's frames /
  rate (an AVI's header, an MP4's sample table), else its duration (from its start, time 0),
  else the file's `length` (a Matroska header's, which may include a longer soundtrack), else
  None."""
  if stream.frames and stream.average_rate:
    return stream.frames / float(stream.average_rate)
  if stream.duration and stream.time_base:
    return float(stream.duration * stream.time_base)
  return length


def _short(got, wanted, unit, min_clip_fraction, slack=0):
  """`Clip.short` of a clip with `got` of the `wanted` frames (or seconds): None when it lacks
  no more than `slack`; `MediaError` when it is less than `min_clip_fraction` of the clip."""
  if got >= wanted - slack:
    return None
  short = f'short: {got:g} of {wanted:g} {unit}'
  if got / wanted < min_clip_fraction:
    raise MediaError(f'{short}, {got / wanted:.2f} of the clip, under min_clip_fraction '
                     f'{min_clip_fraction}')
  return short


def read_clip(spec, *, fps, short_side, sample_rate, qscale, audio=True, min_clip_fraction=0.5,
              require_audio=False):
  """The clip of `spec` as a `Clip`; `MediaError` (or PyAV's errors) when it cannot be read.

  audio=False leaves out the soundtrack of files that have frames (a video benchmark needs no
  waveform, which would take more room than the JPEGs); audio-only files keep theirs.
  Undecodable packets are skipped and counted (`Clip.packets_skipped`); a file with no
  decodable frame in the clip is an error, and so is one without decodable audio there when
  `require_audio`. A file that ends before the clip does (before `spec.end`, or, for a file
  with frames, before the length its header declares when the clip runs to the end) gives a
  shorter clip, its `end` where its frames end, described in `Clip.short`; one filling less
  than `min_clip_fraction` of the clip is an error. (An audio-only clip running to the end of
  its file is not checked: audio headers' lengths are not reliable enough to call it short.)
  """
  reason = time_error(spec.start, spec.end)
  if reason:
    raise MediaError(reason)
  if spec.path is None:
    raise MediaError('no such file')
  with av.open(spec.path) as container:
    video = _video_stream(container)
    timing = timeline.of_container(container, video)
    length = timing.length
    has_video = video is not None
    intended = spec.end  # Where the clip should end: as listed, or where the file says.
    if intended is None and has_video:
      intended = _intended_end(video, length)
    has_audio = bool(container.streams.audio) and (audio or not has_video)
  if not has_video and not has_audio:
    raise MediaError('no audio or video stream')
  if require_audio and not has_audio:
    raise MediaError('no audio stream')
  end = spec.end if spec.end is not None else length
  if length is not None and end is not None:
    end = min(end, length)
  if end is not None and end <= spec.start:
    raise MediaError(f'the clip [{spec.start}, {spec.end}] s is outside the file '
                     f'({length or 0:.2f} s long)')
  jpegs, waveform, skips, short = [], None, _Skips(), None
  if has_video:
    with av.open(spec.path) as container:
      jpegs = read_frames(container, _video_stream(container), spec.start, end,
                          origin=timing.origin, fps=fps, short_side=short_side, qscale=qscale,
                          skips=skips)
    if not jpegs:
      raise MediaError(f'no decodable frame between {spec.start} and {end} s{skips.describe()}')
    if intended is not None:
      # One frame of slack: a file's length is rounded to its frames, or is its soundtrack's.
      short = _short(len(jpegs), frame_count(spec.start, intended, fps), 'frames',
                     min_clip_fraction, slack=1)
    if short:
      end = spec.start + len(jpegs) / fps  # Where the frames end; the audio ends there too.
  if has_audio:
    audio_skips = _Skips()
    with av.open(spec.path) as container:
      waveform = read_audio(container, container.streams.audio[0], spec.start, end,
                            origin=timing.origin, sample_rate=sample_rate, skips=audio_skips)
    skips.count += audio_skips.count
    if waveform is None and (require_audio or not has_video):
      raise MediaError(f'no decodable audio between {spec.start} and {end} s'
                       f'{audio_skips.describe()}')
  if not has_video:
    seconds = len(waveform) / sample_rate
    if intended is not None:  # To 10 ms: resampling may round a sample or two away.
      short = _short(round(seconds, 2), round(intended - spec.start, 2), 's', min_clip_fraction)
    if end is None or short:
      end = spec.start + seconds
  elif end is None:
    end = spec.start + len(jpegs) / fps
  return Clip(jpegs=jpegs, waveform=waveform, start=spec.start, end=end,
              packets_skipped=skips.count, short=short)


def read_clip_or_reason(spec, **options):
  """`read_clip`, with a failure returned as its reason: the worker function of the pool.

  Any error of one file is its reason (PyAV raises ValueError, e.g. for an audio stream whose
  sample rate changes midway): one file never stops a conversion of millions.
  """
  try:
    return read_clip(spec, **options)
  except Exception as e:  # pylint: disable=broad-except
    return f'{type(e).__name__}: {e}'
