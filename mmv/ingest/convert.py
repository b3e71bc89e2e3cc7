r"""Converts raw media files into sharded DMVR-format TFRecords (see mmv/data/format.py).

    python -m mmv.ingest.convert --input_csv train.csv --video_root videos \
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
(most frequent first, each caption counted once: a narrated clip stores its neighbours' too)
unless one is there. A file that cannot be read, or a CSV row whose times are not a clip (not
numbers, a negative start, an end not after the start), is skipped and reported. Shards, a new
labels.txt or vocab.txt and the report are staged in a hidden directory and moved into place
only when all are complete (mmv/ingest/staging.py), existing shards of NAME (of any count)
removed first and only with --overwrite: no set of old and new shards, or two sets, is ever
visible, and a conversion stopped while moving is finished by the next one of NAME (a rerun
of the same command does only that). A conversion that writes no clip is an error that changes
nothing. The progress bar goes to a terminal only. The report is also written as
OUTPUT_DIR/NAME.report.json.

A clip goes to the shard a hash of its CSV row or caption picks (`clip_records.shard_of`), in
input order within it, so that the Beam pipeline (`--runner`, mmv/ingest/convert_beam.py),
which decodes on many machines in any order, writes the same shards byte for byte. Without
--runner the output directory is local; arguments the converter does not know go to Beam's PipelineOptions.

The inputs are read by mmv/ingest/clip_lists.py, labels.txt and vocab.txt made by
mmv/ingest/text_files.py, records by mmv/ingest/clip_records.py. TensorFlow is imported inside the
functions that make records or move files: the decoding workers are spawned and import this
module (their __main__), and need only PyAV.
"""

import dataclasses
import functools
import hashlib
import json
import multiprocessing
import os
import resource
import shutil
import sys

from absl import app
from absl import flags
import tqdm

from mmv.ingest import clip_lists
from mmv.ingest import clip_records
from mmv.data import format as fmt
from mmv.ingest import media
from mmv.ingest import staging
from mmv.ingest import text_files



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
            require_audio=False, audio_format='float'):
  """Writes the clips of `specs` as `output_dir/name-*-of-{num_shards}`; returns a report
  {'written': clips, 'shards': paths, 'skipped': [(name, reason)], 'short': [(name, text)],
  'packets_skipped': [(name, count)], 'audio_clipped': [(name, samples)], 'labels': names}.

  `skipped`: inputs left out before reading (e.g. bad CSV rows), reported first. The label map
  and vocab.txt, when new, and with `write_report` (as the command line does) the report as
  OUTPUT_DIR/NAME.report.json are written with the shards: all or, on any failure, none. See
  `write_shards` for `overwrite` and `allow_empty`. audio=False stores no soundtrack for files
  with frames (see `media.read_clip`, also for `min_clip_fraction` and `require_audio`).

  A move of `name` into `output_dir` that was cut short is finished first (see
  `mmv.ingest.staging`); if it was this conversion's (the same specs and settings), that is all,
  and its report is returned.
  """
  if not specs and not allow_empty:  # Before anything, the output directory included.
    raise clip_records.nothing_written(list(skipped))
  clip_records.check_audio_format(audio_format)
  label_map_path = label_map_path or os.path.join(output_dir, fmt.LABEL_MAP)
  settings = dict(name=name, num_shards=num_shards, fps=fps, short_side=short_side,
                  sample_rate=sample_rate, jpeg_qscale=jpeg_qscale, label_map_path=label_map_path,
                  audio=audio, write_report=write_report, min_clip_fraction=min_clip_fraction,
                  require_audio=require_audio)
  if audio_format != 'float':  # The default leaves the digest of earlier conversions as it was.
    settings['audio_format'] = audio_format
  command = _digest([settings, [dataclasses.asdict(spec) for spec in specs], list(skipped)])
  # Before the label map and vocab.txt are looked for: such a move may bring them.
  finished = [manifest['report'] for manifest in staging.finish_cut_short(output_dir, name)
              if manifest.get('command') == command]
  labels = text_files.label_map(specs, label_map_path)
  if finished:  # This conversion's own move, cut short: now done.
    return {**finished[0], 'labels': labels}
  new_files = {}
  if labels and not os.path.exists(label_map_path):
    new_files[label_map_path] = labels
  vocab_file = os.path.join(output_dir, 'vocab.txt')
  if any(spec.captions for spec in specs) and not os.path.exists(vocab_file):
    new_files[vocab_file] = text_files.vocabulary(specs)
  read = functools.partial(media.read_clip_or_reason, **clip_records.read_options(
      fps=fps, short_side=short_side, sample_rate=sample_rate, jpeg_qscale=jpeg_qscale,
      audio=audio, min_clip_fraction=min_clip_fraction, require_audio=require_audio))
  clips = zip(specs, _clips(specs, num_workers, read))
  report = write_shards(clips, output_dir, name=name, num_shards=num_shards, labels=labels,
                        fps=fps, sample_rate=sample_rate, audio_format=audio_format,
                        total=len(specs), progress=progress,
                        skipped=skipped, overwrite=overwrite, allow_empty=allow_empty,
                        text_files=new_files, command=command,
                        report_path=(os.path.join(output_dir, clip_records.report_name(name))
                                     if write_report else None))
  return {**report, 'labels': labels}


def _digest(value):
  """Names a conversion (its specs and settings, as JSON) in its move's manifest."""
  return hashlib.sha256(json.dumps(value).encode()).hexdigest()


def _allow_open_files(num_shards):
  """Raises this process's soft limit of open files to what `num_shards` writers need (every
  shard is open until the end: the common soft limit of 1024 would fail a 1024-shard
  conversion midway); ConversionError, before anything is written, above the hard limit."""
  needed = num_shards + 256  # The shards, and what TensorFlow, PyAV and the pool hold open.
  soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
  if soft != resource.RLIM_INFINITY and soft < needed:
    if hard != resource.RLIM_INFINITY and hard < needed:
      raise clip_records.ConversionError(
          f'{num_shards} shards need about {needed} open files, above this process\'s limit '
          f'of {hard} (ulimit -Hn); use fewer --num_shards, or the Beam path (--runner), which '
          'writes one shard at a time')
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def write_shards(clips, output_dir, *, name, num_shards, labels, fps, sample_rate, total=None,
                 progress=True, skipped=(), overwrite=False, allow_empty=True, text_files=None,
                 report_path=None, command=None, audio_format='float'):
  """Writes `clips`, pairs (ClipSpec, Clip or the reason it could not be read), each to the
  shard `shard_of` picks, in their order, as `output_dir/name-*-of-{num_shards}`, label ids
  the positions in `labels`; returns {'written': clips, 'shards': paths, 'skipped': [(name,
  reason)], 'short': [(name, text)], 'packets_skipped': [(name, count)], 'audio_clipped':
  [(name, samples)]} (`audio_format`: see `clip_records.make_example`).

  Everything, shards, `text_files` ({path: lines}) and the report at `report_path` (if given),
  is staged (`mmv.ingest.staging`) and moved into place only when all is complete, so a failure
  before leaves the visible directory as it was, and a move cut short is finished by the next
  conversion of `name` into `output_dir`. Existing shards of `name` are an error unless
  `overwrite` (then they are replaced, after the new ones are complete, never beside them);
  writing no clip is an error (nothing changed) unless `allow_empty`. `command` names the
  conversion in the move's manifest (see `convert`).
  """
  staging.finish_cut_short(output_dir, name)
  existing = staging.refuse_existing(output_dir, name, overwrite)
  _allow_open_files(num_shards)
  created = not os.path.isdir(output_dir)
  stage = staging.directory(output_dir, name, 'convert')
  # Left by a conversion stopped before its move began (one with a move was finished above).
  shutil.rmtree(stage, ignore_errors=True)
  os.makedirs(stage)
  shards = [os.path.join(output_dir, fmt.shard_name(name, i, num_shards))
            for i in range(num_shards)]
  text_files = text_files or {}
  moves = [(staging.staged_path(stage, path), path)
           for path in shards + list(text_files) + ([report_path] if report_path else [])]
  try:
    report = _write_staged(clips, [src for src, _ in moves[:num_shards]], shards=shards,
                           labels=labels, fps=fps, sample_rate=sample_rate, total=total,
                           progress=progress, skipped=skipped, allow_empty=allow_empty,
                           audio_format=audio_format)
    for (src, _), lines in zip(moves[num_shards:], text_files.values()):
      with open(src, 'w') as f:
        f.write(''.join(f'{line}\n' for line in lines))
    if report_path:
      with open(moves[-1][0], 'w') as f:
        f.write(clip_records.report_text(report))
    staging.begin_move(stage, moves=moves, remove=existing, report=report, command=command)
  except BaseException:
    for src, _ in moves:
      if os.path.exists(src):
        os.remove(src)
    shutil.rmtree(stage, ignore_errors=True)
    if created and not os.listdir(output_dir):
      os.rmdir(output_dir)  # A failure leaves no trace, not even the directory.
    raise
  return staging.finish_move(stage)['report']


def _write_staged(clips, paths, *, shards, labels, fps, sample_rate, total, progress,
                  skipped, allow_empty, audio_format):
  """Writes the records of `clips` into the shard files `paths`; the report (see
  `write_shards`), its shards `shards`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  label_ids = {label: i for i, label in enumerate(labels)}
  written, skipped, short, packets_skipped, audio_clipped = 0, list(skipped), [], [], []
  writers = [tf.io.TFRecordWriter(path) for path in paths]
  # disable=None: a bar on a terminal only, never in a log file.
  for spec, clip in tqdm.tqdm(clips, total=total, unit='clip',
                              disable=None if progress else True, file=sys.stderr):
    if isinstance(clip, str):
      skipped.append((spec.name, clip))
      continue
    example = clip_records.make_example(spec, clip, label_ids, fps=fps, sample_rate=sample_rate,
                                        audio_format=audio_format)
    # Deterministic: map fields in key order, so a conversion reproduces byte for byte.
    writers[clip_records.shard_of(spec, len(paths))].write(
        example.SerializeToString(deterministic=True))
    written += 1
    if clip.short:
      short.append((spec.name, clip.short))
    if clip.packets_skipped:
      packets_skipped.append((spec.name, clip.packets_skipped))
    if clipped := clip_records.clipped_samples(clip, audio_format):
      audio_clipped.append((spec.name, clipped))
  for writer in writers:
    writer.close()
  if not written and not allow_empty:
    raise clip_records.nothing_written(skipped)
  return {'written': written, 'shards': shards, 'skipped': skipped, 'short': short,
          'packets_skipped': packets_skipped, 'audio_clipped': audio_clipped}


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
  if report.get('audio_clipped'):
    lines.append(f'clipped audio samples beyond [-1, 1) to 16 bits in '
                 f'{len(report["audio_clipped"])} clips (--audio_format int16), samples by clip:')
    lines += [f'  {clip}: {n}' for clip, n in report['audio_clipped']]
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
  flags.DEFINE_enum('audio_format', 'float', fmt.AUDIO_FORMATS, 'How the waveform is stored: '
                    'float (DMVR\'s float list, as decoded) or int16 (16-bit PCM, half the bytes; '
                    'samples beyond [-1, 1) clipped and counted in the report).')
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
              require_audio=f.require_audio, audio_format=f.audio_format)


def _beam():
  """mmv.ingest.convert_beam, or a one-line exit when Apache Beam is not installed."""
  try:
    from mmv.ingest import convert_beam  # pylint: disable=g-import-not-at-top
  except ModuleNotFoundError as e:
    if e.name != 'apache_beam':
      raise
    sys.exit('mmv.ingest.convert: --runner needs Apache Beam: pip install -e ".[beam]" '
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
        specs, rejected = clip_lists.read_csv(f.input_csv, f.video_root)
      else:
        specs, rejected = clip_lists.read_narration(f.narration_json, f.video_root,
                                                    min_clip_seconds=f.min_clip_seconds,
                                                    num_captions=f.narration_captions), []
      report = convert(specs, f.output_dir, num_workers=f.num_workers, skipped=rejected,
                       allow_empty=False, write_report=True, **_settings(f))
  except clip_records.ConversionError as e:
    sys.exit(f'mmv.ingest.convert: {e}')  # Status 1, the message without a traceback.
  print(format_report(report, f.output_dir, f.name), flush=True)


if __name__ == '__main__':
  define_flags()
  app.run(main, flags_parser=parse_flags)
