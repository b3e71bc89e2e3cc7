r"""Writes the clips of a converted split back out as video files, with a CSV of their labels.

    python -m mmv.tools.records_to_videos --data_dir data/synthetic --split test \
        --output_dir runs/demo/test_videos

Each record becomes OUTPUT_DIR/FILENAME.mkv (its frames as MJPEG at the record's frame rate,
its waveform as 16-bit PCM), and OUTPUT_DIR/videos.csv lists `video_path,start,end,label` (the
converter's CSV layout, labels by name), so `python -m mmv.embed --input OUTPUT_DIR/videos.csv`
indexes them with their labels: e.g. the synthetic dataset's test videos for the search demo.
Existing files are not overwritten: an OUTPUT_DIR that holds videos.csv is refused.
"""

import csv
import fractions
import os

from absl import app
from absl import flags
import av
import numpy as np
import tensorflow as tf

from mmv.ingest import clip_records
from mmv.data import format as fmt
from mmv.data import records

def write_video(path, frames, fps, waveform=None, sample_rate=None):
  """An MJPEG (+ PCM) Matroska file of uint8 frames [T, H, W, 3] at `fps` and a mono float
  waveform in [-1, 1] at `sample_rate`."""
  with av.open(path, 'w', format='matroska') as container:
    rate = fractions.Fraction(fps).limit_denominator(1000)
    video = container.add_stream('mjpeg', rate=rate)
    video.height, video.width = frames.shape[1:3]
    video.pix_fmt = 'yuvj420p'
    video.options = {'qmin': '2', 'qmax': '2'}
    audio = None  # Every stream is added before the first packet (the header) is written.
    if waveform is not None and waveform.size:
      audio = container.add_stream('pcm_s16le', rate=int(sample_rate), layout='mono')
    for k, image in enumerate(frames):
      frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format='rgb24')
      frame.pts, frame.time_base = k, 1 / rate
      container.mux(video.encode(frame))
    container.mux(video.encode(None))
    if audio is not None:
      samples = (np.clip(waveform, -1, 1) * 32767).astype(np.int16)[None]
      frame = av.AudioFrame.from_ndarray(samples, format='s16', layout='mono')
      frame.sample_rate, frame.pts = int(sample_rate), 0
      container.mux(audio.encode(frame))
      container.mux(audio.encode(None))


def _context(example, key, kind):
  feature = example.context.feature.get(key)
  return list(getattr(feature, kind).value) if feature is not None else []


def write_split(data_dir, split, output_dir, limit=0):
  """Writes the records of `split` as videos under `output_dir` and lists them in
  `output_dir/videos.csv`; returns that CSV's path."""
  listing = os.path.join(output_dir, 'videos.csv')
  if os.path.exists(listing):
    raise FileExistsError(f'{listing} exists: give another --output_dir')
  os.makedirs(output_dir, exist_ok=True)
  rows = []
  for path in records.split_files(data_dir, split):
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
      if limit and len(rows) >= limit:
        break
      example = tf.train.SequenceExample.FromString(record)
      name = _context(example, fmt.FILENAME, 'bytes_list')[0].decode()
      jpegs = [f.bytes_list.value[0] for f in example.feature_lists.feature_list[fmt.IMAGE].feature]
      frames = np.stack([tf.io.decode_jpeg(j, channels=3).numpy() for j in jpegs])
      wave = clip_records.waveform_of(example)
      fps = _context(example, fmt.FPS, 'float_list')[0]
      rate = (_context(example, fmt.SAMPLE_RATE, 'float_list') or [fmt.DEFAULT_SAMPLE_RATE])[0]
      file = f'{name}.mkv'
      write_video(os.path.join(output_dir, file), frames, fps, wave, rate)
      labels = [l.decode() for l in _context(example, fmt.LABEL_TEXT, 'bytes_list')]
      rows.append([file, '', '', ';'.join(labels)])
  with open(listing + '.tmp', 'w', newline='') as f:
    csv.writer(f).writerows([['video_path', 'start', 'end', 'label']] + rows)
  os.replace(listing + '.tmp', listing)
  return listing


def define_flags():
  """The command line (defined only when run, so importing this module defines no flags)."""
  flags.DEFINE_string('data_dir', None, 'Directory of the converted shards.')
  flags.DEFINE_string('split', 'test', 'The split: shards SPLIT-*-of-*.')
  flags.DEFINE_string('output_dir', None, 'Where the videos and videos.csv go.')
  flags.DEFINE_integer('limit', 0, 'Write only the first N records (0: all).')
  flags.mark_flags_as_required(['data_dir', 'output_dir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  tf.config.set_visible_devices([], 'GPU')
  f = flags.FLAGS
  try:
    listing = write_split(f.data_dir, f.split, f.output_dir, f.limit)
  except (FileExistsError, FileNotFoundError) as e:
    raise SystemExit(f'error: {e}') from None
  print(f'wrote {listing}')


if __name__ == '__main__':
  define_flags()
  app.run(main)
