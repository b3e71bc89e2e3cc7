"""The converter's inputs as clips: a CSV of clips, or a dense narration JSON → ClipSpecs.

Both paths of the converter, local (mmv/ingest/convert.py) and Beam (mmv/ingest/convert_beam.py),
read their inputs here, so that they make the same clips. Paths may be URLs (gs://...), read
through TensorFlow's file systems, which is imported only then: the local converter's decoding
workers import this module and need only PyAV.
"""

import csv
import glob
import json
import os

from mmv.ingest import media


def _seconds(value, default, what):
  value = value.strip()
  if not value:
    return default
  try:
    return float(value)
  except ValueError:
    raise ValueError(f'{what} {value!r} is not a number of seconds') from None


def _csv_spec(row, video_root):
  """The ClipSpec of one CSV row; ValueError saying why the row cannot be one."""
  if not 3 <= len(row) <= 5:
    raise ValueError(f'expected video_path,start,end[,label][,caption], got {len(row)} fields')
  row = row + [''] * (5 - len(row))
  start, end = _seconds(row[1], 0.0, 'start'), _seconds(row[2], None, 'end')
  reason = media.time_error(start, end)
  if reason:
    raise ValueError(reason)
  labels = tuple(l.strip() for l in row[3].split(';') if l.strip())
  return media.ClipSpec(name=row[0], path=os.path.join(video_root, row[0]), start=start,
                        end=end, labels=labels,
                        captions=(row[4].strip(),) if row[4].strip() else ())


def open_text(path):
  """A text file to read, local or a URL (gs://...) through TensorFlow's file systems."""
  if '://' in path:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return tf.io.gfile.GFile(path)
  return open(path, newline='')


def read_csv(path, video_root=''):
  """(ClipSpecs of a clip CSV, its rows that are not clips as [(where, reason)]), `where`
  naming the file, the row (its line) and the row's video path."""
  specs, rejected, first = [], [], True
  with open_text(path) as f:
    reader = csv.reader(f)
    for row in reader:
      if not any(v.strip() for v in row):
        continue
      header = first and [v.strip() for v in row[:3]] == ['video_path', 'start', 'end']
      first = False
      if header:
        continue
      try:
        specs.append(_csv_spec(row, video_root))
      except ValueError as e:
        rejected.append((f'{path} row {reader.line_num} ({row[0]})', str(e)))
  return specs, rejected


def read_narration_json(path):
  """{video_id: {"start": [s], "end": [s], "text": [...]}} of a dense narration JSON."""
  with open_text(path) as f:
    return json.load(f)


# Files a downloader leaves beside a video (yt-dlp's .description, .info.json, subtitles,
# thumbnails, partial downloads): never the video of an id.
_NOT_MEDIA = frozenset(['.description', '.json', '.txt', '.vtt', '.srt', '.jpg', '.jpeg',
                        '.png', '.webp', '.part', '.ytdl', '.temp', '.tmp'])


def find_video(video_root, video_id):
  """VIDEO_ROOT/video_id.<extension> (the first in name order, leaving out what a downloader
  writes beside a video: .description, .info.json, subtitles, thumbnails, .part), or None."""
  pattern = os.path.join(video_root, glob.escape(video_id) + '.*')
  if '://' in video_root:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    matches = tf.io.gfile.glob(pattern)
  else:
    matches = glob.glob(pattern)
  media_files = [m for m in matches if os.path.splitext(m)[1].lower() not in _NOT_MEDIA]
  return min(media_files, default=None)


def narration_clips(video_id, entry, path, *, min_clip_seconds, num_captions):
  """The ClipSpecs of one narrated video (file `path`): one per caption, in time order, with
  its nearest captions."""
  segments = sorted(zip(entry['start'], entry['end'], entry['text']))
  specs = []
  for start, end, _ in segments:
    middle = (start + end) / 2
    half = max(end - start, min_clip_seconds) / 2
    nearest = sorted(segments, key=lambda s: abs((s[0] + s[1]) / 2 - middle))[:num_captions]
    specs.append(media.ClipSpec(
        name=video_id, path=path, start=max(0.0, middle - half), end=middle + half,
        captions=tuple(s[2] for s in nearest), caption_starts=tuple(s[0] for s in nearest),
        caption_ends=tuple(s[1] for s in nearest)))
  return specs


def read_narration(path, video_root, *, min_clip_seconds, num_captions):
  """ClipSpecs of a dense narration JSON: the videos in id order, one clip per caption."""
  narration = read_narration_json(path)
  return [spec for video_id in sorted(narration)
          for spec in narration_clips(video_id, narration[video_id],
                                      find_video(video_root, video_id),
                                      min_clip_seconds=min_clip_seconds,
                                      num_captions=num_captions)]
