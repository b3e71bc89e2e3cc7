"""Tiny real media files for tests, written with PyAV.

Video frame k is a flat grey of level `grey(k)` (so a decoded frame tells its time); the
soundtrack is silent but for a 1 kHz tone from BURST[0] to BURST[1] seconds (the AC-3 and
MP3 files for tolerant decoding have tones of their own).
"""

import fractions

import av
import numpy as np

FPS = 25
SECONDS = 1.6
SIZE = (64, 48)  # width, height
BURST = (0.6, 1.0)


def grey(k):
  return 16 + 6 * k


def tone(rate, seconds=SECONDS):
  t = np.arange(int(rate * seconds)) / rate
  return np.where((t >= BURST[0]) & (t < BURST[1]), 0.5 * np.sin(2 * np.pi * 1000 * t), 0.0)


def _write_audio(container, stream, wave, fmt):
  chunk = 1024
  for i in range(0, len(wave), chunk):
    part = wave[i:i + chunk]
    data = (part * 32767).astype(np.int16) if fmt == 's16' else part.astype(np.float32)
    frame = av.AudioFrame.from_ndarray(data[None], format=fmt, layout='mono')
    frame.sample_rate = stream.rate
    frame.pts = i
    for packet in stream.encode(frame):
      container.mux(packet)
  for packet in stream.encode(None):
    container.mux(packet)


def write_video(path, *, video_codec, audio_codec=None, audio_rate=48000):
  """An FPS-rate, SECONDS-long video of SIZE; with a tone track if `audio_codec`."""
  with av.open(path, 'w') as container:
    video = container.add_stream(video_codec, rate=FPS)
    video.width, video.height = SIZE
    video.pix_fmt = 'yuvj420p' if video_codec == 'mjpeg' else 'yuv420p'
    audio = None
    if audio_codec:
      audio = container.add_stream(audio_codec, rate=audio_rate, layout='mono')
    for k in range(int(FPS * SECONDS)):
      image = np.full((SIZE[1], SIZE[0], 3), grey(k), np.uint8)
      frame = av.VideoFrame.from_ndarray(image, format='rgb24')
      frame.pts = k
      frame.time_base = fractions.Fraction(1, FPS)
      for packet in video.encode(frame):
        container.mux(packet)
    for packet in video.encode(None):
      container.mux(packet)
    if audio is not None:
      fmt = 's16' if audio_codec == 'pcm_s16le' else 'fltp'
      _write_audio(container, audio, tone(audio_rate), fmt)


def write_wav(path, rate=44100):
  with av.open(path, 'w') as container:
    stream = container.add_stream('pcm_s16le', rate=rate, layout='mono')
    _write_audio(container, stream, tone(rate), 's16')


AC3_FRAME = 1536  # Samples per AC-3 packet.


def write_avi_ac3(path, *, seconds=SECONDS, corrupt=(), rate=48000, corrupt_video=()):
  """An AVI of MPEG-4 video (frames as `write_video`'s) and AC-3 stereo audio: a 440 Hz tone,
  both channels alike. The audio packets numbered in `corrupt` are replaced by random bytes of
  their size, which FFmpeg's AC-3 decoder refuses. In the file, audio packet n is at
  n * AC3_FRAME / rate seconds (an AVI counts audio packets; the encoder's 256-sample delay
  stays in the sound). FFmpeg's AC-3 parser appends a garbage packet to the packet before it
  (the next sync word ends that one), so reading loses that one too. The video packets numbered
  in `corrupt_video` are random bytes too (a key frame every 10 frames then)."""
  garbage = np.random.RandomState(0)
  with av.open(path, 'w') as container:
    video = container.add_stream('mpeg4', rate=FPS)
    video.width, video.height = SIZE
    video.pix_fmt = 'yuv420p'
    if corrupt_video:
      video.gop_size = 10
    audio = container.add_stream('ac3', rate=rate, layout='stereo')
    video_packets = []
    for k in range(int(FPS * seconds)):
      image = np.full((SIZE[1], SIZE[0], 3), grey(k), np.uint8)
      frame = av.VideoFrame.from_ndarray(image, format='rgb24')
      frame.pts, frame.time_base = k, fractions.Fraction(1, FPS)
      video_packets += video.encode(frame)
    video_packets += video.encode(None)
    for n, packet in enumerate(video_packets):
      container.mux(_garbage(packet, garbage) if n in corrupt_video else packet)
    wave = (0.5 * np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate)).astype(
        np.float32)
    packets = []
    for i in range(0, len(wave), AC3_FRAME):
      frame = av.AudioFrame.from_ndarray(np.stack([wave[i:i + AC3_FRAME]] * 2), format='fltp',
                                         layout='stereo')
      frame.sample_rate, frame.pts = rate, i
      packets += audio.encode(frame)
    packets += audio.encode(None)
    for n, packet in enumerate(packets):
      container.mux(_garbage(packet, garbage) if n in corrupt else packet)


def _garbage(packet, random):
  """A packet of random bytes in place of `packet` (its size, times and stream)."""
  bad = av.Packet(random.randint(0, 256, packet.size).astype(np.uint8).tobytes())
  bad.pts, bad.dts, bad.duration = packet.pts, packet.dts, packet.duration
  bad.time_base, bad.stream = packet.time_base, packet.stream
  return bad


def write_mp4_mp3(path, *, rate=16000, seconds=1.0):
  """An MP4 of MPEG-4 video and MP3 mono audio: a 500 Hz square wave of amplitude 0.95, which
  the MP3 decoder gives back overshooting ±1 (Gibbs ringing at the edges)."""
  with av.open(path, 'w') as container:
    video = container.add_stream('mpeg4', rate=FPS)
    video.width, video.height = SIZE
    video.pix_fmt = 'yuv420p'
    audio = container.add_stream('libmp3lame', rate=rate, layout='mono')
    for k in range(int(FPS * seconds)):
      frame = av.VideoFrame.from_ndarray(np.full((SIZE[1], SIZE[0], 3), grey(k), np.uint8),
                                         format='rgb24')
      frame.pts, frame.time_base = k, fractions.Fraction(1, FPS)
      for packet in video.encode(frame):
        container.mux(packet)
    for packet in video.encode(None):
      container.mux(packet)
    t = np.arange(int(rate * seconds)) / rate
    wave = (0.95 * np.sign(np.sin(2 * np.pi * 500 * t))).astype(np.float32)
    for i in range(0, len(wave), 1152):
      frame = av.AudioFrame.from_ndarray(wave[None, i:i + 1152], format='fltp', layout='mono')
      frame.sample_rate, frame.pts = rate, i
      for packet in audio.encode(frame):
        container.mux(packet)
    for packet in audio.encode(None):
      container.mux(packet)


def write_from(path, start, *, video=True, audio=True, video_codec='mpeg4', audio_codec='aac'):
  """`write_video`'s frames and its tone at 48 kHz in `audio_codec` (either may be left out),
  their timestamps from `start` seconds (a multiple of 1 / FPS), as an MPEG-TS or HLS segment,
  or a file cut with -copyts, has them: frame k at start + k / FPS, sample i at start + i /
  48000. The format is the extension's (.ts, .mp4, .m4a, .mkv, .mka). An MP4 keeps its times
  to the sample (in its default time scale, ms, the sound of one starting at 10 s is 0.67 ms
  early). The AAC encoder's priming (1024 samples) comes before `start` in the file: MP4 trims
  it when `start` is 0 (an edit list), plays it otherwise; MPEG-TS always plays it."""
  rate = 48000
  mp4 = path.endswith(('.mp4', '.m4a'))
  with av.open(path, 'w', options={'movie_timescale': str(rate)} if mp4 else {}) as container:
    streams = []  # (stream, its frames): every stream is added before the first packet.
    if video:
      stream = container.add_stream(video_codec, rate=FPS)
      stream.width, stream.height = SIZE
      stream.pix_fmt = 'yuv420p'
      stream.bit_rate = 1_000_000  # Frames decode to their grey to within a level.
      frames = []
      for k in range(int(FPS * SECONDS)):
        frame = av.VideoFrame.from_ndarray(np.full((SIZE[1], SIZE[0], 3), grey(k), np.uint8),
                                           format='rgb24')
        frame.pts, frame.time_base = round(start * FPS) + k, fractions.Fraction(1, FPS)
        frames.append(frame)
      streams.append((stream, frames))
    if audio:
      stream = container.add_stream(audio_codec, rate=rate, layout='mono')
      wave = tone(rate).astype(np.float32)
      frames = []
      for i in range(0, len(wave), 1024):
        frame = av.AudioFrame.from_ndarray(wave[None, i:i + 1024], format='fltp', layout='mono')
        frame.sample_rate, frame.time_base = rate, fractions.Fraction(1, rate)
        frame.pts = round(start * rate) + i
        frames.append(frame)
      streams.append((stream, frames))
    for stream, frames in streams:
      for frame in frames + [None]:
        for packet in stream.encode(frame):
          container.mux(packet)


# Frame k (< 512) of video v (< 9) of `write_numbered_video`: k in base 16 in red and green, and
# 2 v + k // 256 in blue, each digit d a level 16 + LEVEL_STEP d, so a decoded frame tells both
# through lossy JPEG steps and resizing.
LEVEL_STEP = 14


def numbered_colour(k, video=0):
  if not (0 <= k < 512 and 0 <= video < 9):
    raise ValueError(f'frame {k} of video {video}: up to frame 511 of video 8')
  digits = (k % 16, k // 16 % 16, 2 * video + k // 256)
  return tuple(16 + LEVEL_STEP * d for d in digits)


def frame_numbers(rgb):
  """(video, frame) of `numbered_colour` colours [..., 3] (0-255), the nearest levels."""
  d = np.rint((np.asarray(rgb, np.float64) - 16) / LEVEL_STEP).astype(int)
  return d[..., 2] // 2, d[..., 0] + 16 * d[..., 1] + 256 * (d[..., 2] % 2)


def write_numbered_video(path, frames, video=0):
  """A FPS-rate video of SIZE and `frames` frames (up to 512), frame k the flat colour
  `numbered_colour(k, video)`, losslessly coded (FFV1)."""
  with av.open(path, 'w') as container:
    stream = container.add_stream('ffv1', rate=FPS)
    stream.width, stream.height = SIZE
    stream.pix_fmt = 'yuv444p'
    for k in range(frames):
      image = np.empty((SIZE[1], SIZE[0], 3), np.uint8)
      image[:] = numbered_colour(k, video)
      frame = av.VideoFrame.from_ndarray(image, format='rgb24')
      frame.pts, frame.time_base = k, fractions.Fraction(1, FPS)
      for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode(None):
      container.mux(packet)
