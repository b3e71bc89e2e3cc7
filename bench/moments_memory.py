r"""Windows/s and peak memory of `mmv.embed` on long videos: time linear, memory flat in length.

    .venv/bin/python bench/moments_memory.py [--hours 1,3] [--hop 10] [--workdir runs/demo]

Writes low-resolution test videos (32 px square, 5 fps MPEG-4, a 4 kHz PCM soundtrack, in
Matroska; content a slowly drifting gradient, a new colour every minute, and a tone) of each
length, then embeds each in a fresh process (`python -m mmv.embed`, one file, `--hop` seconds
between windows) and reports its wall time, windows, windows/s and peak resident memory
(ru_maxrss of the child). Without --workdir the model is configs/tiny.py freshly initialised
(speed and memory do not depend on training). Prints a JSON line per length.
"""

import argparse
import fractions
import json
import os
import subprocess
import sys
import tempfile
import time

import av
import numpy as np

FPS = 5
SIZE = 32
RATE = 4000


def write_video(path, seconds):
  """A `seconds`-long low-resolution video with sound (see the module doc)."""
  with av.open(path, 'w') as container:
    video = container.add_stream('mpeg4', rate=FPS)
    video.width = video.height = SIZE
    video.pix_fmt = 'yuv420p'
    video.gop_size = 5 * FPS
    sound = container.add_stream('pcm_s16le', rate=RATE, layout='mono')
    ramp = np.linspace(0, 1, SIZE, dtype=np.float32)
    chunk = RATE  # One second of sound per video second.
    t = np.arange(chunk) / RATE
    for second in range(int(seconds)):
      colour = np.random.default_rng(second // 60).uniform(40, 220, 3)
      for k in range(FPS):
        shift = (second * FPS + k) % SIZE
        image = np.roll(ramp[None, :, None] * colour[None, None, :], shift, axis=1)
        image = np.broadcast_to(image, (SIZE, SIZE, 3)).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format='rgb24')
        frame.pts, frame.time_base = second * FPS + k, fractions.Fraction(1, FPS)
        for packet in video.encode(frame):
          container.mux(packet)
      tone = (0.3 * np.sin(2 * np.pi * (200 + 10 * (second // 60)) * t) * 32767).astype(np.int16)
      frame = av.AudioFrame.from_ndarray(tone[None], format='s16', layout='mono')
      frame.sample_rate, frame.pts = RATE, second * chunk
      for packet in sound.encode(frame):
        container.mux(packet)
    for stream in (video, sound):
      for packet in stream.encode(None):
        container.mux(packet)


def tiny_workdir(path):
  """A workdir with configs/tiny.py's model freshly initialised (step 0) on the synthetic
  dataset's vocabulary (data/synthetic, generated if absent)."""
  script = f'''
import os, tensorflow as tf
tf.config.set_visible_devices([], 'GPU')
from configs import tiny
from mmv import checkpoint as ckpt_lib, sharding, train_step
from mmv.data import synthetic
data = os.path.abspath('data/synthetic')
if not os.path.exists(os.path.join(data, 'info.json')):
  synthetic.generate(data)
c = tiny.get_config()
c.data.data_dir = data
model = train_step.create_model(c)
state = train_step.create_train_state(c, model, train_step.create_optimizer(c),
                                      sharding.make_mesh())
ckpt = ckpt_lib.Checkpointer(os.path.join({path!r}, 'checkpoints'))
ckpt.save(0, state, signature=ckpt_lib.variable_signature(state.variables()))
ckpt.wait_until_finished()
ckpt.close()
open(os.path.join({path!r}, 'config.json'), 'w').write(c.to_json_best_effort(indent=1))
'''
  subprocess.run([sys.executable, '-c', script], check=True)


def embed(workdir, video, index, hop):
  """(seconds, peak RSS MiB, report line) of `python -m mmv.embed` on one file, run under a
  fresh parent process so that its ru_maxrss of the children is this run's alone."""
  command = [sys.executable, '-m', 'mmv.embed', '--workdir', workdir, '--input', video,
             '--output', index, '--hop', str(hop), '--noprogress']
  wrapper = ('import resource, subprocess, sys\n'
             'out = subprocess.run(sys.argv[1:], check=True, capture_output=True, text=True)\n'
             'print(out.stdout.strip().splitlines()[-1])\n'
             'print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n')
  start = time.time()
  out = subprocess.run([sys.executable, '-c', wrapper] + command, check=True,
                       capture_output=True, text=True)
  seconds = time.time() - start
  line, peak = out.stdout.strip().splitlines()[-2:]
  return seconds, int(peak) / 1024, line


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--hours', default='1,3')
  parser.add_argument('--hop', type=float, default=10.0)
  parser.add_argument('--workdir', default=None)
  parser.add_argument('--keep', default=None, help='Directory to write the videos to (kept).')
  args = parser.parse_args()
  tmp = tempfile.mkdtemp(prefix='mmv-moments-bench-')
  workdir = args.workdir or os.path.join(tmp, 'run')
  if not args.workdir:
    os.makedirs(workdir)
    tiny_workdir(workdir)
  videos = args.keep or tmp
  os.makedirs(videos, exist_ok=True)
  for hours in sorted(float(h) for h in args.hours.split(',')):
    path = os.path.join(videos, f'{hours:g}h.mkv')
    start = time.time()
    if not os.path.exists(path):
      write_video(path, hours * 3600)
    written = time.time() - start
    seconds, peak, line = embed(workdir, path, os.path.join(tmp, f'index-{hours:g}h'), args.hop)
    windows = int(line.split('new (')[1].split(' windows')[0])
    print(json.dumps({'hours': hours, 'file_mb': round(os.path.getsize(path) / 2**20, 1),
                      'write_s': round(written, 1), 'hop_s': args.hop, 'windows': windows,
                      'embed_s': round(seconds, 1), 'windows_per_s': round(windows / seconds, 2),
                      'peak_rss_mib': round(peak)}), flush=True)


if __name__ == '__main__':
  main()
