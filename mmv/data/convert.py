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
(most frequent first) unless one is there. A file that cannot be read, or a CSV row whose
times are not a clip (not numbers, a negative start, an end not after the start), is skipped
and reported. Shards, and a new labels.txt or vocab.txt, are written under temporary names and
renamed only when all are complete; a conversion that writes no clip is an error that changes
nothing, and existing shards of NAME are replaced only with --overwrite. The progress bar goes
to a terminal only. The report is also written as OUTPUT_DIR/NAME.report.json.

A clip goes to the shard a hash of its CSV row or caption picks (`shard_of`), in input order
within it, so that the Beam pipeline (`--runner`, mmv/data/convert_beam.py), which decodes on
many machines in any order, writes the same shards byte for byte. Without --runner the output
directory is local; arguments the converter does not know go to Beam's PipelineOptions.

TensorFlow is imported inside the functions that make records or open URLs: the decoding
workers are spawned and import this module (their __main__), and need only PyAV.
"""

import collections
import csv
import functools
import glob
import hashlib
import json
import multiprocessing
import os
import re
import resource
import sys

from absl import app
from absl import flags
import tqdm

from mmv.data import format as fmt
from mmv.data import media


class ConversionError(ValueError):
  """A conversion refused before it changed anything in the output directory."""


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


def _open(path):
  """A text file to read, local or a URL (gs://...) through TensorFlow's file systems."""
  if '://' in path:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return tf.io.gfile.GFile(path)
  return open(path, newline='')


def read_csv(path, video_root=''):
  """(ClipSpecs of a clip CSV, its rows that are not clips as [(where, reason)]), `where`
  naming the file, the row (its line) and the row's video path."""
  specs, rejected, first = [], [], True
  with _open(path) as f:
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
  with _open(path) as f:
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


def resolve_labels(names, existing, where):
  """Label names in id order: `existing` (the lines of the map file `where`; None when there
  is none) refusing names it lacks, else the sorted `names` (for the caller to write once the
  shards are complete)."""
  if existing is None:
    return sorted(names)
  unknown = sorted(set(names) - set(existing))
  if unknown:
    raise ConversionError(f'labels {unknown} are not in the label map {where}; convert every '
                          'split with one map (delete it to build a new one)')
  return list(existing)


def read_lines(path):
  """The non-empty lines of a labels.txt."""
  with _open(path) as f:
    return [line.rstrip('\n') for line in f if line.strip()]


def label_map(specs, path):
  """Label names in id order: those of `path` if it exists, else the sorted names."""
  existing = read_lines(path) if os.path.exists(path) else None
  return resolve_labels({label for spec in specs for label in spec.labels}, existing, path)


def caption_words(spec):
  """The words of a clip's captions, split as the tokenizer splits."""
  return [word for caption in spec.captions
          for word in re.sub(fmt.NON_WORD, ' ', caption.lower()).split()]


def vocabulary_order(word, count):
  """The vocabulary's order: most frequent first, ties alphabetical."""
  return (-count, word)


MAX_WORDS = 65536  # Of a vocab.txt the converter writes.


def vocabulary(specs, max_words=MAX_WORDS):
  """Caption words, most frequent first (ties alphabetical), split as the tokenizer splits."""
  counts = collections.Counter(word for spec in specs for word in caption_words(spec))
  return sorted(counts, key=lambda w: vocabulary_order(w, counts[w]))[:max_words]


def shard_of(spec, num_shards):
  """The shard of a clip: a hash (SHA-256, the same on every machine and Python run, unlike
  `hash`) of what the input says of it: name, times, labels and captions, not the file's path
  (the same list converted from another directory gives the same shards)."""
  key = json.dumps([spec.name, spec.start, spec.end, spec.labels, spec.captions,
                    spec.caption_starts, spec.caption_ends])
  return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], 'big') % num_shards


def read_options(*, fps=fmt.DEFAULT_FPS, short_side=256, sample_rate=int(fmt.DEFAULT_SAMPLE_RATE),
                 jpeg_qscale=3, audio=True, min_clip_fraction=0.5, require_audio=False):
  """The keyword arguments of `media.read_clip_or_reason`: one place for both paths, local
  (`convert`) and Beam (`convert_beam.run`, which passes its own keyword arguments here), so
  that they decode alike; ConversionError for options that cannot work together."""
  if not 0 <= min_clip_fraction <= 1:
    raise ConversionError(f'min_clip_fraction {min_clip_fraction} is not a fraction (0 to 1)')
  if require_audio and not audio:
    raise ConversionError('require_audio asks for the audio that audio=False leaves out')
  return dict(fps=fps, short_side=short_side, sample_rate=sample_rate, qscale=jpeg_qscale,
              audio=audio, min_clip_fraction=min_clip_fraction, require_audio=require_audio)


def report_name(name):
  """The report file of split `name`: not `name-*-of-*`, so no reader takes it for a shard."""
  return f'{name}.report.json'


def report_text(report):
  """The report file's content: JSON of what `format_report` prints, shards by file name."""
  return json.dumps({
      'written': report['written'],
      'shards': [os.path.basename(path) for path in report['shards']],
      'skipped': [list(item) for item in report['skipped']],
      'short': [list(item) for item in report['short']],
      'packets_skipped': [list(item) for item in report['packets_skipped']],
  }, indent=1) + '\n'


def _temporary(path):
  """Where `path` is written before it is complete: the same directory, so that the rename is
  atomic, and a hidden name, so that no reader's NAME-*-of-* pattern takes it."""
  directory, base = os.path.split(path)
  return os.path.join(directory, f'.{base}.tmp')


def is_shard(filename, name):
  """Whether `filename` is a shard of `name`, of any shard count."""
  return re.fullmatch(re.escape(name) + r'-\d{5,}-of-\d{5,}', filename) is not None


def _shards_of(output_dir, name):
  """The shard files of `name` in `output_dir`, of any shard count."""
  if not os.path.isdir(output_dir):
    return []
  return sorted(os.path.join(output_dir, f) for f in os.listdir(output_dir) if is_shard(f, name))


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
            label_map_path=None, audio=True, progress=True, skipped=(), overwrite=False,
            allow_empty=True, write_report=False, min_clip_fraction=0.5,
            require_audio=False):
  """Writes the clips of `specs` as `output_dir/name-*-of-{num_shards}`; returns a report
  {'written': clips, 'shards': paths, 'skipped': [(name, reason)], 'short': [(name, text)],
  'packets_skipped': [(name, count)], 'labels': names}.

  `skipped`: inputs left out before reading (e.g. bad CSV rows), reported first. The label map
  and vocab.txt, when new, and with `write_report` (as the command line does) the report as
  OUTPUT_DIR/NAME.report.json are written with the shards: all or, on any failure, none. See
  `write_shards` for `overwrite` and `allow_empty`. audio=False stores no soundtrack for files
  with frames (see `media.read_clip`, also for `min_clip_fraction` and `require_audio`).
  """
  if not specs and not allow_empty:  # Before anything, the output directory included.
    raise _nothing_written(list(skipped))
  label_map_path = label_map_path or os.path.join(output_dir, fmt.LABEL_MAP)
  labels = label_map(specs, label_map_path)
  text_files = {}
  if labels and not os.path.exists(label_map_path):
    text_files[label_map_path] = labels
  vocab_file = os.path.join(output_dir, 'vocab.txt')
  if any(spec.captions for spec in specs) and not os.path.exists(vocab_file):
    text_files[vocab_file] = vocabulary(specs)
  read = functools.partial(media.read_clip_or_reason, **read_options(
      fps=fps, short_side=short_side, sample_rate=sample_rate, jpeg_qscale=jpeg_qscale,
      audio=audio, min_clip_fraction=min_clip_fraction, require_audio=require_audio))
  clips = zip(specs, _clips(specs, num_workers, read))
  report = write_shards(clips, output_dir, name=name, num_shards=num_shards, labels=labels,
                        fps=fps, sample_rate=sample_rate, total=len(specs), progress=progress,
                        skipped=skipped, overwrite=overwrite, allow_empty=allow_empty,
                        text_files=text_files,
                        report_path=(os.path.join(output_dir, report_name(name))
                                     if write_report else None))
  return {**report, 'labels': labels}


def _nothing_written(skipped):
  reasons = '; '.join(f'{clip}: {reason}' for clip, reason in skipped[:3])
  more = ', ...' if len(skipped) > 3 else ''
  found = f'all {len(skipped)} skipped ({reasons}{more})' if skipped else 'none listed'
  return ConversionError(f'no clip to write: {found}; nothing was changed')


def _allow_open_files(num_shards):
  """Raises this process's soft limit of open files to what `num_shards` writers need (every
  shard is open until the end: the common soft limit of 1024 would fail a 1024-shard
  conversion midway); ConversionError, before anything is written, above the hard limit."""
  needed = num_shards + 256  # The shards, and what TensorFlow, PyAV and the pool hold open.
  soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
  if soft != resource.RLIM_INFINITY and soft < needed:
    if hard != resource.RLIM_INFINITY and hard < needed:
      raise ConversionError(f'{num_shards} shards need about {needed} open files, above this '
                            f'process\'s limit of {hard} (ulimit -Hn); use fewer --num_shards, '
                            'or the Beam path (--runner), which writes one shard at a time')
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def write_shards(clips, output_dir, *, name, num_shards, labels, fps, sample_rate, total=None,
                 progress=True, skipped=(), overwrite=False, allow_empty=True, text_files=None,
                 report_path=None):
  """Writes `clips`, pairs (ClipSpec, Clip or the reason it could not be read), each to the
  shard `shard_of` picks, in their order, as `output_dir/name-*-of-{num_shards}`, label ids
  the positions in `labels`; returns {'written': clips, 'shards': paths, 'skipped': [(name,
  reason)], 'short': [(name, text)], 'packets_skipped': [(name, count)]}.

  Everything, shards, `text_files` ({path: lines}) and the report at `report_path` (if given),
  is written under temporary names and renamed only when all is complete, so a failure leaves
  the directory as it was. Existing shards of `name` are an error unless `overwrite` (then
  they are replaced, after the new ones are complete); writing no clip is an error (nothing
  changed) unless `allow_empty`.
  """
  existing = _shards_of(output_dir, name)
  if existing and not overwrite:
    raise ConversionError(f'{output_dir} already holds {name} shards ({existing[0]}, ...); '
                          'pass --overwrite to replace them, or choose another --name')
  _allow_open_files(num_shards)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  created = not os.path.isdir(output_dir)
  os.makedirs(output_dir, exist_ok=True)
  shards = [os.path.join(output_dir, fmt.shard_name(name, i, num_shards))
            for i in range(num_shards)]
  text_files = text_files or {}
  label_ids = {label: i for i, label in enumerate(labels)}
  written, skipped, short, packets_skipped = 0, list(skipped), [], []
  reports = [report_path] if report_path else []
  staged = {_temporary(path): path for path in shards + list(text_files) + reports}
  try:
    writers = [tf.io.TFRecordWriter(_temporary(path)) for path in shards]
    # disable=None: a bar on a terminal only, never in a log file.
    for spec, clip in tqdm.tqdm(clips, total=total, unit='clip',
                                disable=None if progress else True, file=sys.stderr):
      if isinstance(clip, str):
        skipped.append((spec.name, clip))
        continue
      example = make_example(spec, clip, label_ids, fps=fps, sample_rate=sample_rate)
      # Deterministic: map fields in key order, so a conversion reproduces byte for byte.
      writers[shard_of(spec, num_shards)].write(example.SerializeToString(deterministic=True))
      written += 1
      if clip.short:
        short.append((spec.name, clip.short))
      if clip.packets_skipped:
        packets_skipped.append((spec.name, clip.packets_skipped))
    for writer in writers:
      writer.close()
    if not written and not allow_empty:
      raise _nothing_written(skipped)
    for path, lines in text_files.items():
      with open(_temporary(path), 'w') as f:
        f.write(''.join(f'{line}\n' for line in lines))
    report = {'written': written, 'shards': shards, 'skipped': skipped, 'short': short,
              'packets_skipped': packets_skipped}
    for path in reports:
      with open(_temporary(path), 'w') as f:
        f.write(report_text(report))
    for tmp, path in staged.items():
      os.replace(tmp, path)
  except BaseException:
    for tmp in staged:
      if os.path.exists(tmp):
        os.remove(tmp)
    if created and not os.listdir(output_dir):
      os.rmdir(output_dir)  # A failure leaves no trace, not even the directory.
    raise
  for path in sorted(set(existing) - set(shards)):  # An old set of another shard count.
    os.remove(path)
  return report


def format_report(report, output_dir, name):
  lines = [f'wrote {report["written"]} clips to {len(report["shards"])} shards '
           f'{os.path.join(output_dir, name)}-*-of-{len(report["shards"]):05d}']
  if report['labels']:
    lines.append(f'{len(report["labels"])} labels')
  if report['skipped']:
    lines.append(f'skipped {len(report["skipped"])}:')
    lines += [f'  {clip}: {reason}' for clip, reason in report['skipped']]
  if report.get('short'):
    lines.append(f'stored {len(report["short"])} short clips (the file ends before the clip):')
    lines += [f'  {clip}: {text}' for clip, text in report['short']]
  if report.get('packets_skipped'):
    # By clip: overlapping clips of a file (narration) each count a packet they both read.
    lines.append(f'skipped undecodable packets in {len(report["packets_skipped"])} clips '
                 '(audio: silence there), packets by clip:')
    lines += [f'  {clip}: {n}' for clip, n in report['packets_skipped']]
  return '\n'.join(lines)


def define_flags():
  """The command line (defined only when run, so importing this module defines no flags)."""
  flags.DEFINE_string('input_csv', None, 'CSV of clips: video_path,start,end[,label][,caption].')
  flags.DEFINE_string('narration_json', None, 'Dense narration JSON (HowTo100M style).')
  flags.DEFINE_string('video_root', '', 'Directory the video paths are relative to.')
  flags.DEFINE_string('output_dir', None, 'Where the shards go: a local directory, or with '
                      '--runner any path TensorFlow writes (gs://...).')
  flags.DEFINE_string('name', 'train', 'Shard name: NAME-00000-of-00016 (the split).')
  flags.DEFINE_integer('num_shards', 16, 'Number of shards.')
  flags.DEFINE_float('fps', fmt.DEFAULT_FPS, 'Frames per second stored.')
  flags.DEFINE_integer('short_side', 256, 'Short side of stored frames (0: keep).')
  flags.DEFINE_integer('sample_rate', int(fmt.DEFAULT_SAMPLE_RATE), 'Audio sample rate stored.')
  flags.DEFINE_integer('num_workers', os.cpu_count(), 'Decoding processes (without --runner).')
  flags.DEFINE_integer('jpeg_qscale', 3, 'JPEG quantiser scale, 2 (best) to 31.')
  flags.DEFINE_string('label_map', None, 'Label map file; default OUTPUT_DIR/labels.txt (used '
                      'if present, else written).')
  flags.DEFINE_float('min_clip_seconds', 4.0, 'Narration: shortest clip around a caption.')
  flags.DEFINE_integer('narration_captions', 8, 'Narration: captions stored per clip (its own '
                       'first).')
  flags.DEFINE_float('min_clip_fraction', 0.5, 'Skip a clip the file fills less than this '
                     'fraction of (it ends before the clip does); fuller ones are stored short.')
  flags.DEFINE_bool('require_audio', False, 'Skip videos without decodable audio in the clip '
                    '(default: stored without a waveform).')
  flags.DEFINE_bool('overwrite', False, 'Replace existing NAME shards (once the new ones are '
                    'complete); without it they are an error.')
  flags.DEFINE_string('runner', None, 'Convert with this Apache Beam runner (DirectRunner, '
                      'DataflowRunner, FlinkRunner, SparkRunner); arguments the converter does '
                      'not know, as --option=value, go to Beam. Without it: local processes.')


def parse_flags(argv):
  """absl's parse, leaving the arguments it does not know for Beam (main refuses them
  without --runner)."""
  return flags.FLAGS(argv, known_only=True)


def _settings(f):
  """What both paths, local and Beam, take from the command line: one place, so that they
  convert alike."""
  return dict(name=f.name, num_shards=f.num_shards, fps=f.fps, short_side=f.short_side,
              sample_rate=f.sample_rate, jpeg_qscale=f.jpeg_qscale, label_map_path=f.label_map,
              overwrite=f.overwrite, min_clip_fraction=f.min_clip_fraction,
              require_audio=f.require_audio)


def _beam():
  """mmv.data.convert_beam, or a one-line exit when Apache Beam is not installed."""
  try:
    from mmv.data import convert_beam  # pylint: disable=g-import-not-at-top
  except ModuleNotFoundError as e:
    if e.name != 'apache_beam':
      raise
    sys.exit('mmv.data.convert: --runner needs Apache Beam: pip install -e ".[beam]" '
             '(apache-beam==2.77.0)')
  return convert_beam


def main(argv):
  f = flags.FLAGS
  if len(argv) > 1 and not f.runner:
    raise app.UsageError(f'unexpected arguments: {argv[1:]} (Beam options need --runner)')
  if (f.input_csv is None) == (f.narration_json is None):
    raise app.UsageError('give one of --input_csv and --narration_json')
  if not f.output_dir:
    raise app.UsageError('--output_dir is required')
  try:
    if f.runner:
      report = _beam().run(
          f.output_dir, input_csv=f.input_csv, narration_json=f.narration_json,
          video_root=f.video_root, min_clip_seconds=f.min_clip_seconds,
          num_captions=f.narration_captions, beam_args=[f'--runner={f.runner}', *argv[1:]],
          **_settings(f))
    else:
      if f.input_csv:
        specs, rejected = read_csv(f.input_csv, f.video_root)
      else:
        specs, rejected = read_narration(f.narration_json, f.video_root,
                                         min_clip_seconds=f.min_clip_seconds,
                                         num_captions=f.narration_captions), []
      report = convert(specs, f.output_dir, num_workers=f.num_workers, skipped=rejected,
                       allow_empty=False, write_report=True, **_settings(f))
  except ConversionError as e:
    sys.exit(f'mmv.data.convert: {e}')  # Status 1, the message without a traceback.
  print(format_report(report, f.output_dir, f.name), flush=True)


if __name__ == '__main__':
  # The importable module's main: mmv.data.convert_beam raises that module's ConversionError,
  # a class apart from __main__'s.
  from mmv.data import convert as importable  # pylint: disable=g-import-not-at-top
  importable.define_flags()
  app.run(importable.main, flags_parser=importable.parse_flags)
