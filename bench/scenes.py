"""Generated videos with the detail of real footage, for the benchmarks that convert or read
them (a flat synthetic frame would compress and decode unrealistically fast)."""

import fractions

import av
import numpy as np
import tensorflow as tf


def write_video(path, seed, seconds):
  """`seconds` of a textured scene with moving shapes and camera noise, and a soundtrack
  (H.264 426x320 at 25 fps + AAC at 48 kHz): what the benchmarks convert and read."""
  rng = np.random.default_rng(seed)
  width, height, fps, rate = 426, 320, 25, 48000
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  field = tf.image.resize(rng.uniform(30, 220, (1, 5, 7, 3)).astype(np.float32),
                          (height, width)).numpy()[0]
  texture = (25 * np.sin(xx / 5.0 + 3 * np.sin(yy / 23.0)) +
             20 * np.sin(xx / 1.7 + yy / 2.3) * np.sin(yy / 9.0))[..., None]
  with av.open(path, 'w') as container:
    video = container.add_stream('libx264', rate=fps)
    video.width, video.height, video.pix_fmt = width, height, 'yuv420p'
    video.options = {'crf': '18'}  # Keep the fine detail real footage has.
    audio = container.add_stream('aac', rate=rate, layout='mono')
    for k in range(seconds * fps):
      frame = field + np.roll(texture, 3 * k, axis=1) + rng.normal(0, 6, (height, width, 3))
      for j in range(3):
        cy, cx = 60 + 90 * j + 20 * np.sin(k / 9 + j), (5 * k * (j + 1)) % width
        frame[(yy - cy) ** 2 + (xx - cx) ** 2 < 900] = 60 * j + 40
      image = av.VideoFrame.from_ndarray(np.clip(frame, 0, 255).astype(np.uint8), format='rgb24')
      image.pts, image.time_base = k, fractions.Fraction(1, fps)
      for packet in video.encode(image):
        container.mux(packet)
    for packet in video.encode(None):
      container.mux(packet)
    t = np.arange(seconds * rate) / rate
    wave = (0.3 * np.sin(2 * np.pi * 440 * t * (1 + 0.1 * np.sin(t))) +
            0.05 * rng.normal(size=t.shape)).astype(np.float32)
    for i in range(0, len(wave), 1024):
      chunk = av.AudioFrame.from_ndarray(wave[None, i:i + 1024], format='fltp', layout='mono')
      chunk.sample_rate, chunk.pts = rate, i
      for packet in audio.encode(chunk):
        container.mux(packet)
    for packet in audio.encode(None):
      container.mux(packet)
