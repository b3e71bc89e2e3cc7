r"""Converts raw media files into sharded DMVR-format TFRecords (see mmv/data/format.py).

    python -m mmv.data.convert --input_csv train.csv --video_root videos \
        --output_dir data/mine --name train --num_shards 16 --num_workers 8

Inputs (one of):
  --input_csv       rows `video_path,start,end[,label][,caption]`, times in seconds (an empty
                    start is 0, an empty end the end of the file); several labels of one clip
                    are separated by ';'. A first row `video_path,start,end,...` is a header.
  --narration_json  HowTo100M-style {video_id: {"start": [s], "end": [s], "text": [...]}}: the
                    video is VIDEO_ROOT/video_id.<any extension>; one clip per caption, at least
                    --min_clip_seconds long around it, storing it and its nearest captions with
                    their times, so a reader can pick the K nearest to the frames it samples.

Any format FFmpeg reads works; audio-only files (e.g. ESC-50 wavs) become records without
frames (`clip/has_video` 0), videos without an audio track records without a waveform
(`clip/has_audio` 0). Labels get ids from the sorted label names, written to
OUTPUT_DIR/labels.txt; a later split converted into the same directory reuses that map (and
refuses labels it lacks), so ids agree across splits. Caption words make OUTPUT_DIR/vocab.txt
(most frequent first) unless one is there. A file that cannot be read is skipped and reported;
shards are written under temporary names and renamed only when the conversion succeeded.
The output directory is local.

TensorFlow is imported inside the two functions that make records: the decoding workers are
spawned and import this module (their __main__), and need only PyAV.
"""

import collections
import csv
import functools
import glob
import json
import multiprocessing
import os
import re
import sys

from absl import app
from absl import flags
import tqdm

from mmv.data import format as fmt
from mmv.data import media

def _seconds(value, default):
  return default if value.strip() == '' else float(value)


def read_csv(path, video_root=''):
  """ClipSpecs of a clip CSV."""
  with open(path, newline='') as f:
    rows = [r for r in csv.reader(f) if r and any(v.strip() for v in r)]
  if rows and [v.strip() for v in rows[0][:3]] == ['video_path', 'start', 'end']:
    rows = rows[1:]
  specs = []
  for row in rows:
    if not 3 <= len(row) <= 5:
      raise ValueError(f'{path}: expected video_path,start,end[,label][,caption], got {row}')
    row = row + [''] * (5 - len(row))
    labels = tuple(l.strip() for l in row[3].split(';') if l.strip())
    specs.append(media.ClipSpec(
        name=row[0], path=os.path.join(video_root, row[0]), start=_seconds(row[1], 0.0),
        end=_seconds(row[2], None), labels=labels,
        captions=(row[4].strip(),) if row[4].strip() else ()))
  return specs


def read_narration(path, video_root, *, min_clip_seconds, num_captions):
  """ClipSpecs of a dense narration JSON: one clip per caption, with its nearest captions."""
  with open(path) as f:
    narration = json.load(f)
  specs = []
  for video_id in sorted(narration):
    entry = narration[video_id]
    segments = sorted(zip(entry['start'], entry['end'], entry['text']))
    matches = sorted(glob.glob(os.path.join(video_root, glob.escape(video_id) + '.*')))
    for start, end, _ in segments:
      middle = (start + end) / 2
      half = max(end - start, min_clip_seconds) / 2
      nearest = sorted(segments, key=lambda s: abs((s[0] + s[1]) / 2 - middle))[:num_captions]
      specs.append(media.ClipSpec(
          name=video_id, path=matches[0] if matches else None,
          start=max(0.0, middle - half), end=middle + half,
          captions=tuple(s[2] for s in nearest), caption_starts=tuple(s[0] for s in nearest),
          caption_ends=tuple(s[1] for s in nearest)))
  return specs


def label_map(specs, path):
  """Label names in id order: those of `path` if it exists, else the sorted names (written)."""
  names = sorted({label for spec in specs for label in spec.labels})
  if os.path.exists(path):
    with open(path) as f:
      existing = [line.rstrip('\n') for line in f if line.strip()]
    unknown = sorted(set(names) - set(existing))
    if unknown:
      raise ValueError(f'labels {unknown} are not in the label map {path}; convert every '
                       'split with one map (delete it to build a new one)')
    return existing
  if names:
    _write_lines(path, names)
  return names


def vocabulary(specs, max_words=65536):
  """Caption words, most frequent first (ties alphabetical), split as the tokenizer splits."""
  counts = collections.Counter(
      word for spec in specs for caption in spec.captions
      for word in re.sub(fmt.NON_WORD, ' ', caption.lower()).split())
  return sorted(counts, key=lambda w: (-counts[w], w))[:max_words]


def _write_lines(path, lines):
  with open(path + '.tmp', 'w') as f:
    f.write(''.join(f'{line}\n' for line in lines))
  os.replace(path + '.tmp', path)


def make_example(spec, clip, label_ids, *, fps, sample_rate):
  """The SequenceExample of one converted clip."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  _bytes, _ints, _floats = fmt.bytes_feature, fmt.ints_feature, fmt.floats_feature
  us = lambda seconds: int(round(seconds * 1e6))
  context = {
      fmt.FILENAME: _bytes([spec.name.encode()]),
      fmt.START_US: _ints([us(clip.start)]),
      fmt.END_US: _ints([us(clip.end)]),
      fmt.FPS: _floats([fps]),
      fmt.SAMPLE_RATE: _floats([sample_rate]),
      fmt.HAS_VIDEO: _ints([int(bool(clip.jpegs))]),
      fmt.HAS_AUDIO: _ints([int(clip.waveform is not None)]),
  }
  if spec.labels:
    context[fmt.LABEL_INDEX] = _ints([label_ids[l] for l in spec.labels])
    context[fmt.LABEL_TEXT] = _bytes([l.encode() for l in spec.labels])
  if spec.captions:
    context[fmt.CAPTION] = _bytes([c.encode() for c in spec.captions])
  if spec.caption_starts:
    context[fmt.CAPTION_START_US] = _ints([us(s) for s in spec.caption_starts])
    context[fmt.CAPTION_END_US] = _ints([us(s) for s in spec.caption_ends])
  feature_lists = {}
  if clip.jpegs:
    feature_lists[fmt.IMAGE] = tf.train.FeatureList(feature=[_bytes([j]) for j in clip.jpegs])
  if clip.waveform is not None:
    feature_lists[fmt.WAVEFORM] = tf.train.FeatureList(feature=[_floats(clip.waveform)])
  return tf.train.SequenceExample(context=tf.train.Features(feature=context),
                                  feature_lists=tf.train.FeatureLists(feature_list=feature_lists))


def _clips(specs, num_workers, read):
  """read(spec) for every spec, in order, by a pool of `num_workers` processes."""
  if num_workers <= 1:
    yield from map(read, specs)
    return
  # Spawned, not forked: the workers start clean of TensorFlow's threads and import only PyAV.
  with multiprocessing.get_context('spawn').Pool(num_workers) as pool:
    yield from pool.imap(read, specs, chunksize=1)


def convert(specs, output_dir, *, name, num_shards, fps=fmt.DEFAULT_FPS, short_side=256,
            sample_rate=int(fmt.DEFAULT_SAMPLE_RATE), num_workers=1, jpeg_qscale=3,
            label_map_path=None, audio=True, progress=True):
  """Writes the clips of `specs` as `output_dir/name-*-of-{num_shards}`; returns a report
  {'written': clips, 'shards': paths, 'skipped': [(name, reason)], 'labels': names}.

  audio=False stores no soundtrack for files with frames (see `media.read_clip`).
  """
  os.makedirs(output_dir, exist_ok=True)
  labels = label_map(specs, label_map_path or os.path.join(output_dir, fmt.LABEL_MAP))
  vocab_file = os.path.join(output_dir, 'vocab.txt')
  if any(spec.captions for spec in specs) and not os.path.exists(vocab_file):
    _write_lines(vocab_file, vocabulary(specs))
  read = functools.partial(media.read_clip_or_reason, fps=fps, short_side=short_side,
                           sample_rate=sample_rate, qscale=jpeg_qscale, audio=audio)
  clips = zip(specs, _clips(specs, num_workers, read))
  report = write_shards(clips, output_dir, name=name, num_shards=num_shards, labels=labels,
                        fps=fps, sample_rate=sample_rate, total=len(specs), progress=progress)
  return {**report, 'labels': labels}


def write_shards(clips, output_dir, *, name, num_shards, labels, fps, sample_rate, total=None,
                 progress=True):
  """Writes `clips`, pairs (ClipSpec, Clip or the reason it could not be read), round-robin
  as `output_dir/name-*-of-{num_shards}`, label ids the positions in `labels`; returns
  {'written': clips, 'shards': paths, 'skipped': [(name, reason)]}."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  os.makedirs(output_dir, exist_ok=True)
  shards = [os.path.join(output_dir, fmt.shard_name(name, i, num_shards))
            for i in range(num_shards)]
  pattern = os.path.join(glob.escape(output_dir), f'{glob.escape(name)}-*-of-*')
  stale = sorted(set(glob.glob(pattern)) - set(shards) - {s + '.tmp' for s in shards})
  if stale:
    raise FileExistsError(f'{output_dir} holds other {name} shards ({stale[0]}, ...); remove '
                          'them or choose another --name')
  label_ids = {label: i for i, label in enumerate(labels)}
  tmp = [f'{path}.tmp' for path in shards]
  writers = [tf.io.TFRecordWriter(path) for path in tmp]
  written, skipped = 0, []
  try:
    for spec, clip in tqdm.tqdm(clips, total=total, unit='clip', disable=not progress,
                                file=sys.stderr):
      if isinstance(clip, str):
        skipped.append((spec.name, clip))
        continue
      example = make_example(spec, clip, label_ids, fps=fps, sample_rate=sample_rate)
      # Deterministic: map fields in key order, so a conversion reproduces byte for byte.
      writers[written % num_shards].write(example.SerializeToString(deterministic=True))
      written += 1
    for writer in writers:
      writer.close()
    for src, dst in zip(tmp, shards):
      os.replace(src, dst)
  finally:
    for path in tmp:
      if os.path.exists(path):
        os.remove(path)
  return {'written': written, 'shards': shards, 'skipped': skipped}


def format_report(report, output_dir, name):
  lines = [f'wrote {report["written"]} clips to {len(report["shards"])} shards '
           f'{os.path.join(output_dir, name)}-*-of-{len(report["shards"]):05d}']
  if report['labels']:
    lines.append(f'{len(report["labels"])} labels')
  if report['skipped']:
    lines.append(f'skipped {len(report["skipped"])}:')
    lines += [f'  {clip}: {reason}' for clip, reason in report['skipped']]
  return '\n'.join(lines)


def define_flags():
  """The command line (defined only when run, so importing this module defines no flags)."""
  flags.DEFINE_string('input_csv', None, 'CSV of clips: video_path,start,end[,label][,caption].')
  flags.DEFINE_string('narration_json', None, 'Dense narration JSON (HowTo100M style).')
  flags.DEFINE_string('video_root', '', 'Directory the video paths are relative to.')
  flags.DEFINE_string('output_dir', None, 'Where the shards go (a local directory).')
  flags.DEFINE_string('name', 'train', 'Shard name: NAME-00000-of-00016 (the split).')
  flags.DEFINE_integer('num_shards', 16, 'Number of shards.')
  flags.DEFINE_float('fps', fmt.DEFAULT_FPS, 'Frames per second stored.')
  flags.DEFINE_integer('short_side', 256, 'Short side of stored frames (0: keep).')
  flags.DEFINE_integer('sample_rate', int(fmt.DEFAULT_SAMPLE_RATE), 'Audio sample rate stored.')
  flags.DEFINE_integer('num_workers', os.cpu_count(), 'Decoding processes.')
  flags.DEFINE_integer('jpeg_qscale', 3, 'JPEG quantiser scale, 2 (best) to 31.')
  flags.DEFINE_string('label_map', None, 'Label map file; default OUTPUT_DIR/labels.txt (used '
                      'if present, else written).')
  flags.DEFINE_float('min_clip_seconds', 4.0, 'Narration: shortest clip around a caption.')
  flags.DEFINE_integer('narration_captions', 8, 'Narration: captions stored per clip (its own '
                       'first).')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  f = flags.FLAGS
  if (f.input_csv is None) == (f.narration_json is None):
    raise app.UsageError('give one of --input_csv and --narration_json')
  if not f.output_dir:
    raise app.UsageError('--output_dir is required')
  if f.input_csv:
    specs = read_csv(f.input_csv, f.video_root)
  else:
    specs = read_narration(f.narration_json, f.video_root, min_clip_seconds=f.min_clip_seconds,
                           num_captions=f.narration_captions)
  report = convert(specs, f.output_dir, name=f.name, num_shards=f.num_shards, fps=f.fps,
                   short_side=f.short_side, sample_rate=f.sample_rate,
                   num_workers=f.num_workers, jpeg_qscale=f.jpeg_qscale,
                   label_map_path=f.label_map)
  print(format_report(report, f.output_dir, f.name), flush=True)


if __name__ == '__main__':
  define_flags()
  app.run(main)
