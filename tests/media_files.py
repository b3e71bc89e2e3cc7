"""Tiny real media files for tests, written with PyAV.

Video frame k is a flat grey of level `grey(k)` (so a decoded frame tells its time); the
soundtrack is silent but for a 1 kHz tone from BURST[0] to BURST[1] seconds.
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
