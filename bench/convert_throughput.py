r"""Clips per CPU-second of the converter against its bound and against DMVR's generator, on
the same inputs, in one run; Beam's DirectRunner against the local path; output size.

    python bench/convert_throughput.py [--videos 24] [--workers 2] [--rounds 2] \
        [--dmvr_script DMVR/examples/generate_from_file.py] [--audio_format float]

The inputs are generated H.264 videos (426x320 at 25 fps, textured, with moving shapes and
camera noise, and an AAC soundtrack at 48 kHz), 8 s each, listed in a CSV as two clips of 4 s
(HowTo100M's shortest clip around a caption, `--min_clip_seconds 4`), converted with the
converter's defaults: 10 fps, short side 256 (256x340 JPEGs, qscale 3), audio at 48 kHz.
Every round runs, one after the other:

  bound   the work no converter of these records can avoid, in this one process: for each
          clip, open the file once, seek to the key frame before the clip's start, demux and
          decode video from there to the clip's end, keep the frame at each output time,
          resize it and encode it as JPEG; seek and decode the audio of the clip, resample it
          to 48 kHz mono; make and serialise the record. Straight-line PyAV, written here
          apart from the converter (mmv/ingest/media.py), with no error handling; its records
          are checked against the converter's, byte for byte.
  local   `mmv.ingest.convert.convert` with `--workers` spawned decoding processes.
  beam    `mmv.ingest.convert_beam.run` on the DirectRunner, `--workers` worker processes.
  dmvr    DMVR's own generator, `examples/generate_from_file.py` of a checkout of
          github.com/google-deepmind/dmvr (`--dmvr_script`; skipped with a note without it)
          with `--decode_audio`, run in a subprocess on the same CSV: it runs the ffmpeg binary
          twice per clip (frames, audio) through ffmpeg-python, so it needs `ffmpeg` on PATH and
          `pip install ffmpeg-python pandas` (it also imports absl, numpy, TensorFlow).

Times are CPU seconds (user + system) of every process of a path: this process's and, through
getrusage(RUSAGE_CHILDREN), its finished children's and their descendants' (this process is
made their subreaper, so that a worker whose parent exits without waiting for it is still
counted once it ends). The bound is this process's alone. DMVR's generator is also shown
without the CPU time a Python interpreter takes to start and import its modules (measured in
the same round): the converter's paths run in this process, whose imports are done before.
The local and Beam outputs are checked byte for byte against each other. Local and Beam also
convert the clips of one video alone: from the two sizes, each path's CPU time is split into a
cost per run (starting its worker processes, which for Beam import TensorFlow and Beam) and a
cost per clip, what a conversion of millions of clips pays.
"""

import ctypes
import filecmp
import fractions
import itertools
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import av
import numpy as np
import psutil

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
from mmv.data import format as fmt
from mmv.ingest import clip_lists
from mmv.ingest import clip_records
from mmv.ingest import convert
from mmv.ingest import media
# pylint: enable=g-import-not-at-top,wrong-import-position

# TensorFlow, Beam and bench.scenes (which imports TensorFlow) are imported inside functions:
# the local converter's spawned workers import this module as their __main__, as they import
# mmv.ingest.convert when it is the command line, which imports neither.

_VIDEOS = flags.DEFINE_integer('videos', 24, 'Generated videos (two clips each).')
_WORKERS = flags.DEFINE_integer('workers', 2, 'Local decoding processes = Beam workers.')
_ROUNDS = flags.DEFINE_integer('rounds', 2, 'Rounds (each runs every path once).')
_DIR = flags.DEFINE_string('dir', None, 'Keep the videos and outputs here (default: a temp dir).')
_DMVR = flags.DEFINE_string('dmvr_script', None, 'DMVR\'s examples/generate_from_file.py '
                            '(a checkout of github.com/google-deepmind/dmvr); none: no DMVR '
                            'column.')
_AUDIO_FORMAT = flags.DEFINE_enum('audio_format', 'float', fmt.AUDIO_FORMATS,
                                  'The converter\'s (and the bound\'s) --audio_format.')
_PATHS = flags.DEFINE_list('paths', 'bound,local,beam,dmvr', 'Which paths to run.')

SECONDS, CLIP_SECONDS = 8, 4.0
FPS, SHORT_SIDE, SAMPLE_RATE, QSCALE = 10, 256, 48000, 3
PR_SET_CHILD_SUBREAPER = 36


def make_inputs(directory, count):
  csv = os.path.join(directory, 'clips.csv')
  if os.path.exists(csv):
    return csv
  from bench import scenes  # pylint: disable=g-import-not-at-top
  rows = []
  for i in range(count):
    scenes.write_video(os.path.join(directory, f'v{i:03d}.mp4'), i, SECONDS)
    rows += [f'v{i:03d}.mp4,{s},{s + CLIP_SECONDS},label{i % 4},clip {s} of video {i}'
             for s in (0.0, CLIP_SECONDS)]
  with open(csv + '.tmp', 'w') as f:
    f.write('video_path,start,end,label,caption\n' + '\n'.join(rows) + '\n')
  os.replace(csv + '.tmp', csv)
  return csv


def cpu_seconds():
  """User + system CPU seconds of this process and its finished (waited for) descendants."""
  return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                               resource.getrusage(resource.RUSAGE_CHILDREN)))


def reap(timeout=60.0):
  """Waits for every child left (workers orphaned to this subreaper included), so that their
  CPU time is in RUSAGE_CHILDREN; but multiprocessing's resource tracker, which lives as long
  as this process (its CPU time is not counted)."""
  deadline = time.monotonic() + timeout
  while True:
    left = [child for child in psutil.Process().children()
            if 'resource_tracker' not in ' '.join(child.cmdline())]
    for child in left:
      try:
        if os.waitpid(child.pid, os.WNOHANG)[0]:
          left.remove(child)
      except ChildProcessError:
        left.remove(child)
    if not left:
      return
    if time.monotonic() > deadline:
      print(f'  (children {[c.pid for c in left]} still running after {timeout:.0f} s: '
            'not counted)', flush=True)
      return
    time.sleep(0.05)


# The bound: the unavoidable work of one clip, straight-line PyAV.

def _jpeg_encoder(width, height):
  scale = SHORT_SIDE / min(width, height)
  size = [max(2, int(round(x * scale / 2)) * 2) for x in (width, height)]
  codec = av.codec.CodecContext.create('mjpeg', 'w')
  codec.width, codec.height, codec.pix_fmt = size[0], size[1], 'yuvj420p'
  codec.time_base = fractions.Fraction(1, 1000)
  codec.options = {'qmin': str(QSCALE), 'qmax': str(QSCALE)}
  codec.open()
  pts = itertools.count()  # The encoder wants them increasing.

  def encode(frame):
    frame = frame.reformat(size[0], size[1], 'yuvj420p', interpolation='AREA')
    frame.time_base, frame.pts = codec.time_base, next(pts)
    return bytes(codec.encode(frame)[0])
  return encode


def bound_clip(path, start, end):
  """(JPEGs, float32 waveform) of [start, end) s of `path`: the frame at or before each time
  start + k/FPS, the samples from start at SAMPLE_RATE."""
  with av.open(path) as container:
    video, audio = container.streams.video[0], container.streams.audio[0]
    origin = float(video.start_time * video.time_base)
    encode = _jpeg_encoder(video.codec_context.width, video.codec_context.height)
    count = int(np.ceil((end - start) * FPS - 1e-6))
    if start > 0:
      container.seek(int((origin + start) / video.time_base), stream=video, backward=True)
    jpegs, held, held_jpeg = [], None, None
    for frame in container.decode(video):
      time_ = frame.time - origin
      held = frame if held is None else held
      while len(jpegs) < count and start + len(jpegs) / FPS < time_ - 1e-6:
        held_jpeg = held_jpeg or encode(held)
        jpegs.append(held_jpeg)
      if len(jpegs) == count:
        break
      held, held_jpeg = frame, (held_jpeg if frame is held else None)
    # The video read moved on: seek back (to the file's start for a clip from 0, before
    # packets placed before time 0, e.g. the AAC encoder's priming).
    back = 0 if start > 0 else 1.0
    container.seek(int((origin + start - back) / audio.time_base), stream=audio, backward=True)
    resampler = av.AudioResampler(format='flt', layout='mono', rate=SAMPLE_RATE)
    chunks, first = [], None
    for frame in container.decode(audio):
      first = frame.time - origin if first is None else first
      chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
      if frame.time - origin >= end:
        break
    chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
  skip = int(round((start - first) * SAMPLE_RATE))
  waveform = np.concatenate(chunks)[skip:skip + int(round((end - start) * SAMPLE_RATE))]
  return jpegs, waveform


def bound(specs, label_ids, audio_format):
  """Serialised records of `specs`, by (name, start): the bound's work."""
  records = {}
  for spec in specs:
    jpegs, waveform = bound_clip(spec.path, spec.start, spec.end)
    clip = media.Clip(jpegs=jpegs, waveform=waveform, start=spec.start, end=spec.end)
    example = clip_records.make_example(spec, clip, label_ids, fps=FPS, sample_rate=SAMPLE_RATE,
                                        audio_format=audio_format)
    records[spec.name, spec.start] = example.SerializeToString(deterministic=True)
  return records


def read_records(directory, pattern='*-of-*'):
  """{(filename, start s): record} of the shards in `directory`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  records = {}
  for path in sorted(tf.io.gfile.glob(os.path.join(directory, pattern))):
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
      context = tf.train.SequenceExample.FromString(record).context.feature
      key = (context[fmt.FILENAME].bytes_list.value[0].decode(),
             context[fmt.START_US].int64_list.value[0] / 1e6)
      records[key] = record
  return records


def dmvr_summary(directory):
  """Frames and audio samples per clip of DMVR's records (its outputs differ from ours: its
  ffmpeg picks its own JPEG quality, and it reads s32le samples as float32)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  frames, samples, size, count = [], [], 0, 0
  for path in sorted(tf.io.gfile.glob(os.path.join(directory, '*-of-*'))):
    size += os.path.getsize(path)
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
      lists = tf.train.SequenceExample.FromString(record).feature_lists.feature_list
      frames.append(len(lists[fmt.IMAGE].feature))
      samples.append(len(lists[fmt.WAVEFORM].feature[0].float_list.value)
                     if len(lists[fmt.WAVEFORM].feature) else 0)
      count += 1
  return (f'{count} records, frames per clip {min(frames)}-{max(frames)}, audio samples per '
          f'clip {min(samples)}-{max(samples)}, {size / max(count, 1) / 2**20:.2f} MiB per clip')


def main(argv):
  del argv
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from mmv.ingest import convert_beam  # pylint: disable=g-import-not-at-top
  ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
  directory = _DIR.value or tempfile.mkdtemp(prefix='mmv-convert-bench-')
  os.makedirs(directory, exist_ok=True)
  csv = make_inputs(directory, _VIDEOS.value)
  specs, rejected = clip_lists.read_csv(csv, directory)
  label_ids = {label: i for i, label in enumerate(sorted({l for s in specs for l in s.labels}))}
  num_shards, workers, audio_format = 4, _WORKERS.value, _AUDIO_FORMAT.value
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  dmvr = _DMVR.value and 'dmvr' in _PATHS.value
  if 'dmvr' in _PATHS.value and not _DMVR.value:
    print('note: no --dmvr_script: DMVR\'s generator (examples/generate_from_file.py of a '
          'github.com/google-deepmind/dmvr checkout) is not measured', flush=True)

  few = 2  # The clips of one video: the runs of this many show the paths' fixed costs.
  few_csv = os.path.join(directory, 'few.csv')
  with open(csv) as f, open(few_csv, 'w') as g:
    g.writelines(f.readlines()[:1 + few])

  def local(out, count=len(specs)):
    return convert.convert(specs[:count], out, name='train', num_shards=num_shards,
                           skipped=rejected, num_workers=workers, progress=False,
                           audio_format=audio_format)

  def beam(out, count=len(specs)):
    return convert_beam.run(out, name='train', num_shards=num_shards,
                            input_csv=csv if count == len(specs) else few_csv,
                            video_root=directory, audio_format=audio_format,
                            beam_args=['--runner=DirectRunner', f'--direct_num_workers={workers}',
                                       '--direct_running_mode=multi_processing'])

  def dmvr_run(out):
    os.makedirs(out)
    subprocess.run([sys.executable, _DMVR.value, f'--csv_path={csv}', f'--output_path={out}',
                    f'--video_root_path={directory}', f'--num_shards={num_shards}',
                    '--decode_audio'], check=True, env=env, stdout=subprocess.DEVNULL)
    return {'written': len(specs)}

  def imports(out):  # What DMVR's generator spends before its first clip.
    del out
    subprocess.run([sys.executable, '-c', 'import ffmpeg, numpy, pandas, tensorflow; '
                    'from absl import app, flags'], check=True, env=env)
    return {'written': 0}

  bound_records = {}

  def bound_run(out):
    del out
    bound_records.update(bound(specs, label_ids, audio_format))
    return {'written': len(bound_records)}

  runs = [('bound', bound_run), ('local', local),
          (f'local, {few} clips', lambda out: local(out, few)), ('beam', beam),
          (f'beam, {few} clips', lambda out: beam(out, few))]
  runs = [(name, run) for name, run in runs if name.split(',')[0] in _PATHS.value]
  if dmvr:
    runs += [('dmvr', dmvr_run), ('imports', imports)]
  cpu, clips = {name: [] for name, _ in runs}, {}
  for r in range(_ROUNDS.value):
    for name, run in runs:
      out = os.path.join(directory, f'{name.replace(", ", "_").replace(" ", "_")}{r}')
      shutil.rmtree(out, ignore_errors=True)
      reap()
      wall, before = time.perf_counter(), cpu_seconds()
      clips[name] = run(out)['written']
      reap()
      seconds, wall = cpu_seconds() - before, time.perf_counter() - wall
      cpu[name].append(seconds)
      print(f'round {r} {name}: {clips[name]} clips, {seconds:.1f} CPU-s, {wall:.1f} s wall',
            flush=True)
    if 'local' in cpu and 'beam' in cpu:
      names = sorted(os.listdir(os.path.join(directory, f'local{r}')))
      _, mismatch, errors = filecmp.cmpfiles(os.path.join(directory, f'local{r}'),
                                             os.path.join(directory, f'beam{r}'), names,
                                             shallow=False)
      assert not mismatch and not errors, (mismatch, errors)
  cpu = {name: statistics.median(seconds) for name, seconds in cpu.items()}
  rate = {name: clips[name] / seconds for name, seconds in cpu.items() if clips[name]}
  if dmvr:
    rate['dmvr without imports'] = clips['dmvr'] / (cpu['dmvr'] - cpu['imports'])
  print(f'\n{len(specs)} clips of {CLIP_SECONDS:g} s, audio {audio_format}, {workers} workers, '
        f'medians of {_ROUNDS.value} rounds, clips per CPU-second:')
  for name, value in rate.items():
    others = ('bound',) + (() if name.startswith('dmvr') else ('dmvr', 'dmvr without imports'))
    ratios = ', '.join(f'{value / rate[other]:.2f}x {other}' for other in others
                       if other in rate and other != name)
    print(f'  {name:22s} {value:6.2f}  {ratios}')
  for name in ('local', 'beam'):
    if name in cpu and f'{name}, {few} clips' in cpu:  # cpu = fixed + clips x per_clip
      per_clip = (cpu[name] - cpu[f'{name}, {few} clips']) / (len(specs) - few)
      fixed = cpu[name] - len(specs) * per_clip
      bound_ratio = f' ({1 / per_clip / rate["bound"]:.2f}x bound)' if 'bound' in rate else ''
      print(f'  {name}: {fixed:.1f} CPU-s a run (starting workers, ...) + {per_clip:.3f} CPU-s '
            f'a clip: {1 / per_clip:.2f} clips per CPU-s beyond the fixed cost{bound_ratio}')
  last = _ROUNDS.value - 1
  if 'bound' in cpu and 'local' in cpu:
    converted = read_records(os.path.join(directory, f'local{last}'))
    same = sum(bound_records.get(key) == record for key, record in converted.items())
    print(f'bound\'s records byte-identical to the converter\'s: {same} of {len(converted)}')
  if 'local' in cpu and 'beam' in cpu:
    print('local and Beam outputs byte-identical in every round')
  if 'local' in cpu:
    size = sum(os.path.getsize(p) for p in tf.io.gfile.glob(
        os.path.join(directory, f'local{last}', '*-of-*')))
    print(f'output: {size / len(specs) * 1000 / 2**30:.2f} GiB per 1,000 clips '
          f'({size / len(specs) / 2**20:.2f} MiB per clip)')
  if dmvr:
    print(f'DMVR\'s output: {dmvr_summary(os.path.join(directory, f"dmvr{last}"))}')
  if not _DIR.value:
    shutil.rmtree(directory)


if __name__ == '__main__':
  app.run(main)
