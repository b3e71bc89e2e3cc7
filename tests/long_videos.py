"""Long test videos with known events at known times, written with PyAV.

The background is the synthetic dataset's without a shape (a flat noisy grey, changing noise
each frame) and a faint hiss; an event is a synthetic-dataset clip (`mmv.data.synthetic`: a
coloured shape moving, with its tone) rendered into the video from a given second, frames at
FPS and sound at RATE. Times are exact: frame k is at k / FPS.
"""

import fractions

import av
import numpy as np

from mmv.data import synthetic

FPS = 10
SIZE = 40
RATE = 16000  # AAC takes no lower rate; the model resamples to its own.
EVENT_FRAMES = 20  # 2 s: a synthetic clip's length.


def background(rng, frames):
  level = rng.uniform(20, 90)
  return np.clip(level + rng.normal(0, 12, (frames, SIZE, SIZE, 3)), 0, 255).astype(np.uint8)


def event(seed, colour, shape, direction):
  """(frames [EVENT_FRAMES, SIZE, SIZE, 3] uint8, waveform float32) of one synthetic clip."""
  rng = np.random.default_rng(seed)
  frames = synthetic.render_frames(rng, colour, shape, direction, EVENT_FRAMES, SIZE)
  wave = synthetic.render_audio(rng, colour, shape, direction, EVENT_FRAMES / FPS, RATE)
  return frames, wave


def compose(seconds, events, seed=0):
  """(frames, waveform) of a `seconds`-long video with `events` [(start second, (frames,
  wave))] pasted in."""
  rng = np.random.default_rng(seed)
  frames = background(rng, int(seconds * FPS))
  wave = rng.normal(0, 0.02, int(seconds * RATE)).astype(np.float32)
  for start, (f, w) in events:
    k = int(round(start * FPS))
    frames[k:k + len(f)] = f
    i = int(round(start * RATE))
    wave[i:i + len(w)] = w
  return frames, wave


def write(path, frames, wave, *, codec='mpeg4', bit_rate=400_000, size=None, audio='aac'):
  """Writes frames at FPS (resized to `size` px square if given) and the waveform at RATE."""
  with av.open(path, 'w') as container:
    video = container.add_stream(codec, rate=FPS)
    video.width = video.height = size or frames.shape[1]
    video.pix_fmt = 'yuv420p'
    video.bit_rate = bit_rate
    sound = container.add_stream(audio, rate=RATE, layout='mono') if audio else None
    for k, image in enumerate(frames):
      frame = av.VideoFrame.from_ndarray(image, format='rgb24')
      if size:
        frame = frame.reformat(size, size)
      frame.pts, frame.time_base = k, fractions.Fraction(1, FPS)
      for packet in video.encode(frame):
        container.mux(packet)
    for packet in video.encode(None):
      container.mux(packet)
    if sound is not None:
      chunk = 1024
      fmt = 's16' if audio == 'pcm_s16le' else 'fltp'
      for i in range(0, len(wave), chunk):
        part = wave[i:i + chunk]
        data = (part * 32767).astype(np.int16) if fmt == 's16' else part
        f = av.AudioFrame.from_ndarray(data[None], format=fmt, layout='mono')
        f.sample_rate, f.pts = RATE, i
        for packet in sound.encode(f):
          container.mux(packet)
      for packet in sound.encode(None):
        container.mux(packet)


def reencode(source, path, *, size, bit_rate, codec='mpeg4'):
  """`source` decoded and encoded again (PyAV): frames resized to `size` px square at
  `bit_rate`, the sound re-encoded (AAC at RATE)."""
  frames, chunks = [], []
  with av.open(source) as container:
    for frame in container.decode(video=0):
      frames.append(frame.to_ndarray(format='rgb24'))
  with av.open(source) as container:
    resampler = av.AudioResampler(format='flt', layout='mono', rate=RATE)
    for frame in container.decode(audio=0):
      chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
  write(path, np.stack(frames), np.concatenate(chunks), codec=codec, bit_rate=bit_rate,
        size=size)


def write_wav(path, wave):
  with av.open(path, 'w') as container:
    stream = container.add_stream('pcm_s16le', rate=RATE, layout='mono')
    frame = av.AudioFrame.from_ndarray((wave * 32767).astype(np.int16)[None], format='s16',
                                       layout='mono')
    frame.sample_rate, frame.pts = RATE, 0
    for packet in list(stream.encode(frame)) + list(stream.encode(None)):
      container.mux(packet)
