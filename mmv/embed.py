r"""Embeds every video or sound file of a directory or a CSV into a searchable index of moments.

    python -m mmv.embed --workdir runs/demo --input my_videos/ --output runs/demo/index
    python -m mmv.embed --workdir runs/mmv_s3d_released --config configs/mmv_s3d.py \
        --config.data.data_dir=DATA --input clips.csv --output index --hop 2

--input: a media file, a directory (every file with a media extension under it, recursively)
or a CSV in the converter's layout, `video_path,start,end[,label]` (paths relative to the
CSV's directory; the labels go into the manifest; the windows cover start-end of the file).

Each file is embedded window by window (`mmv.window_embed`): a window of the model's clip
length every `--hop` seconds over the whole file, each read by seeking to it, so memory holds
a batch of windows whatever the file's length. A window is read as the retrieval benchmarks
read clips: the run's retrieval protocol block (`--protocol`, default the run's benchmark; see
`mmv.index_model`) sets its frame rate, frames, stride, resize and crop. The index keeps each
window's embeddings (the picture in S_vat and S_va, the sound in S_va) and each file's (the
mean of its windows'). A file without frames is embedded by its sound.

INDEX layout, the lock and the pending files: `mmv.index_files`. One run writes an index at a
time (a second is refused, naming the run that holds it); a run that dies loses at most the
file it was on: the next run reuses what it finished. A file that cannot be read is listed
unreadable with its reason and the rest goes on; a later run skips it unless --retry_failed.
An index is only extended with the same model (workdir, step, checkpoint modification time),
protocol and hop. The progress bar goes to a terminal only.
"""

import json
import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags
import tqdm

from mmv import checkpoint as ckpt_lib
from mmv import index_ann
from mmv import index_files
from mmv import index_model
from mmv import inference
from mmv import media_inputs
from mmv import window_embed
from mmv import workdir_lock
from mmv.ingest import clip_lists
from mmv.ingest import media

MEDIA_EXTENSIONS = frozenset((
    '.mp4', '.m4v', '.mov', '.mkv', '.webm', '.avi', '.mpg', '.mpeg', '.flv', '.wmv', '.3gp',
    '.ogv', '.ts', '.wav', '.mp3', '.flac', '.ogg', '.oga', '.m4a', '.aac', '.opus', '.wma'))
IndexRefused = index_files.IndexRefused
entry_key = index_files.entry_key


def list_inputs(path):
  """(ClipSpecs of the media under directory `path` or listed in CSV `path`, [(where, why)] of
  the CSV rows that are not clips)."""
  if os.path.isdir(path):
    specs = []
    for root, dirs, files in os.walk(path):
      dirs.sort()
      for name in sorted(files):
        if os.path.splitext(name)[1].lower() in MEDIA_EXTENSIONS:
          full = os.path.join(root, name)
          specs.append(media.ClipSpec(name=os.path.relpath(full, path),
                                      path=os.path.abspath(full), start=0.0, end=None))
    if not specs:
      raise IndexRefused(f'no media file under {path} (extensions '
                        f'{", ".join(sorted(MEDIA_EXTENSIONS))})')
    return specs, []
  if not os.path.isfile(path):
    raise IndexRefused(f'no directory, media file or CSV {path}')
  if os.path.splitext(path)[1].lower() in MEDIA_EXTENSIONS:
    return [media.ClipSpec(name=os.path.basename(path), path=os.path.abspath(path), start=0.0,
                           end=None)], []
  specs, rejected = clip_lists.read_csv(path, os.path.dirname(os.path.abspath(path)))
  if not specs and not rejected:
    raise IndexRefused(f'{path} lists no clip (rows: video_path,start,end[,label])')
  return specs, rejected


def _entry(spec, **fields):
  return {'file': spec.path, 'name': spec.name, 'start': spec.start, 'end': spec.end, **fields}


def index_settings(model, protocol, hop):
  """What index.json holds: the model's identity (with its protocol), the protocol block, the
  hop and window seconds, and the model's config (to embed queries with)."""
  if not hop > 0:
    raise IndexRefused(f'--hop must be a positive number of seconds, got {hop}')
  return {'model': index_model.identity(model, protocol), 'protocol': protocol,
          'hop': float(hop), 'window': window_embed.window_seconds(model.data),
          'config': json.loads(model.config.to_json_best_effort())}


def _outcome(spec, result):
  """(embedded?, entry, file vectors, window times, window vectors) of one input from
  `window_embed.embed_files`'s result; any error of its own makes it unreadable, with the
  reason (one file never stops a run)."""
  if isinstance(result, Exception):
    reason = str(result) if isinstance(result, media_inputs.UnreadableInput) else (
        f'{type(result).__name__}: {result}')
    return False, _entry(spec, reason=reason), None, None, None
  found, times, rows, skipped = result
  kinds = [k for k, has in (('video', found.has_video), ('audio', found.has_audio)) if has]
  entry = _entry(spec, labels=list(spec.labels), duration=round(found.duration, 3),
                 kinds=kinds, windows=len(times), skipped_windows=skipped)
  return True, entry, window_embed.mean_vectors(rows), times, rows


def build_index(model, protocol, specs, index_dir, *, hop=1.0, batch_size=None, part_size=16,
                rejected=(), retry_failed=False, progress=True,
                stale_after=workdir_lock.STALE_AFTER_SECONDS):
  """Embeds `specs` (ClipSpecs) into the index `index_dir`, holding its lock, skipping those
  already there (and those listed unreadable, unless `retry_failed`); returns {'indexed',
  'new', 'already', 'reused' (finished by a run that died), 'windows' (this run's),
  'unreadable': [entries of this run]}. `rejected`: [(where, why)] of inputs that are not
  clips (CSV rows): listed unreadable."""
  if part_size < 1:
    raise IndexRefused(f'--part_size must be at least 1, got {part_size}')
  settings = index_settings(model, protocol, hop)
  with index_files.Writer(index_dir, settings, stale_after) as writer:
    _, files, listed_unreadable = index_files.read_entries(index_dir)
    done = {entry_key(e) for e in files}
    failed = {entry_key(u) for u in listed_unreadable}
    reused = []
    for path in writer.pending():  # Finished by a run that died: put in the next part.
      entry, embedded = writer.pending_entry(path)
      key = entry_key(entry)
      if key in done or (key in failed and not embedded):
        os.remove(path)  # Already in a part (that run died before removing it).
        continue
      reused.append(entry)
      done.add(key)
    if not retry_failed:
      done |= failed
    todo = []
    for spec in specs:  # An input listed twice is embedded once.
      key = entry_key(_entry(spec))
      if key not in done:
        done.add(key)
        todo.append(spec)
    unreadable = []
    for where, why in rejected:
      row = {'file': None, 'name': where, 'start': None, 'end': None, 'reason': why}
      if entry_key(row) not in done:
        writer.add_unreadable(row)
        unreadable.append(row)
    new = windows = 0
    with tqdm.tqdm(total=len(todo), unit='file', disable=None if progress else True,
                   file=sys.stderr) as bar:
      inputs = [(spec.path, (spec.start, spec.end)) for spec in todo]
      for i, result in window_embed.embed_files(model, inputs, hop, batch=batch_size):
        embedded, entry, file_vectors, times, rows = _outcome(todo[i], result)
        if embedded:
          writer.add_embedded(entry, file_vectors, times, rows)
          new += 1
          windows += len(times)
        else:
          writer.add_unreadable(entry)
          unreadable.append(entry)
        if len(writer.pending()) >= part_size:
          writer.write_part(writer.pending())
        bar.update(1)
    if writer.pending():
      writer.write_part(writer.pending())
  reused_files = sum('reason' not in e for e in reused)
  return {'indexed': len(files) + new + reused_files, 'new': new,
          'already': len(specs) - len(todo), 'reused': reused_files, 'windows': windows,
          'unreadable': unreadable}


def define_flags():
  """The command line (defined only when run, so importing this module defines no flags)."""
  flags.DEFINE_string('workdir', None, 'The training run (or imported checkpoint) directory.')
  flags.DEFINE_integer('step', None, 'Checkpoint step; the latest when left out.')
  config_flags.DEFINE_config_file('config', None, 'Config file; default: WORKDIR/config.json.',
                                  lock_config=True)
  flags.DEFINE_string('input', None, 'A media file, a directory of them, or a CSV '
                      'video_path,start,end[,label].')
  flags.DEFINE_string('output', None, 'The index directory (created, or extended).')
  flags.DEFINE_float('hop', 1.0, 'Seconds from one window to the next.')
  flags.DEFINE_string('protocol', None, 'The protocol block (config.eval.NAME) whose clip '
                      'settings windows are read with; default the run\'s benchmark\'s.')
  flags.DEFINE_bool('retry_failed', False, 'Try again the files an earlier run listed '
                    'unreadable.')
  flags.DEFINE_integer('batch_size', None, 'Windows decoded and embedded at once (the model '
                       'sees eval.batch_size at a time); default 128.')
  flags.DEFINE_integer('part_size', 16, 'Files per part written.')
  flags.DEFINE_enum('dtype', 'float32', inference.DTYPES, 'Compute dtype of the model.')
  flags.DEFINE_bool('progress', True, 'A progress bar on stderr (on a terminal).')
  flags.DEFINE_bool('ann', False, 'Then (re)build the approximate (faiss) index of the '
                    'windows that search uses past exact search\'s size (mmv.index_ann).')
  flags.mark_flags_as_required(['workdir', 'input', 'output'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  ckpt_lib.start_reader()
  f = flags.FLAGS
  try:
    specs, rejected = list_inputs(f.input)
    model, protocol = index_model.load(f.workdir, f.step, f.config, protocol=f.protocol,
                                       dtype=f.dtype)
    report = build_index(model, protocol, specs, f.output, hop=f.hop,
                         batch_size=f.batch_size, part_size=f.part_size, rejected=rejected,
                         retry_failed=f.retry_failed, progress=f.progress)
  except (IndexRefused, FileNotFoundError, ValueError) as e:
    raise SystemExit(f'error: {e}') from None
  print(f'{f.output}: {report["indexed"]} files indexed, {report["new"]} new '
        f'({report["windows"]} windows of {window_embed.window_seconds(model.data):g} s every '
        f'{f.hop:g} s), {report["already"]} already there, {report["reused"]} finished by a '
        f'run that stopped (step {model.step} of {f.workdir}, protocol {protocol["name"]})')
  if report['unreadable']:
    print(f'skipped {len(report["unreadable"])} unreadable:')
    for u in report['unreadable']:
      print(f'  {u["name"]}: {u["reason"]}')
  if f.ann:
    for space, built in index_ann.build(f.output).items():
      print(f'ANN index {space}: ' + (built if isinstance(built, str) else
                                      f'{built["windows"]} windows, recall@10 '
                                      f'{built["recall@10"]:.3f} against exact search '
                                      f'(nprobe {built["nprobe"]}, rerank {built["rerank"]})'))


if __name__ == '__main__':
  define_flags()
  app.run(main)
