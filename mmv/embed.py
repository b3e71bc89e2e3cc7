r"""Embeds every video or sound file of a directory or a CSV into a searchable index.

    python -m mmv.embed --workdir runs/demo --input my_videos/ --output runs/demo/index
    python -m mmv.embed --workdir runs/mmv_s3d_released --config configs/mmv_s3d.py \
        --config.data.data_dir=DATA --input clips.csv --output index

--input: a directory (every file with a media extension under it, recursively) or a CSV in the
converter's layout, `video_path,start,end[,label]` (paths relative to the CSV's directory; the
labels go into the manifest). Each file is read by `mmv.inference` as evaluation reads videos:
`--clips` evenly spaced clips, their unit embeddings averaged in S_va and S_vat; a file without
frames is embedded by its sound (audio → S_va, and S_vat through the audio head).

INDEX is a directory:
  index.json           the model (workdir, step, model and input settings, its config) and
                       `clips`: an index is only extended with the same model and checkpoint
  parts/NNNNN/         one part per run chunk (`--part_size` files): va.npy [n, va],
                       vat.npy [n, vat] (float32, unit rows) and manifest.json, whose `entries`
                       list each row's file, modality, clip times (seconds from the file's
                       start: its first frame, see `mmv.ingest.timeline`), labels, and
                       `unreadable` the files that could not be read and why
A part is written under a temporary name and renamed when complete, and nothing already in
INDEX is rewritten: an interrupted run (a crash, Ctrl-C) loses at most the chunk it was on, and
a second run skips the files already in the index (and those listed unreadable). The progress
bar goes to a terminal only.
"""

import json
import os
import shutil
import sys

from absl import app
from absl import flags
from ml_collections import config_flags
import numpy as np
import tensorflow as tf
import tqdm

from mmv import checkpoint as ckpt_lib
from mmv import inference
from mmv import media_inputs
from mmv.ingest import clip_lists
from mmv.ingest import media

MEDIA_EXTENSIONS = frozenset((
    '.mp4', '.m4v', '.mov', '.mkv', '.webm', '.avi', '.mpg', '.mpeg', '.flv', '.wmv', '.3gp',
    '.ogv', '.ts', '.wav', '.mp3', '.flac', '.ogg', '.oga', '.m4a', '.aac', '.opus', '.wma'))
INDEX_FILE = 'index.json'
PARTS = 'parts'
MANIFEST = 'manifest.json'


class IndexRefused(ValueError):
  """An index that cannot be made or extended as asked; nothing was changed."""


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
    raise IndexRefused(f'no directory or CSV {path}')
  specs, rejected = clip_lists.read_csv(path, os.path.dirname(os.path.abspath(path)))
  if not specs and not rejected:
    raise IndexRefused(f'{path} lists no clip (rows: video_path,start,end[,label])')
  return specs, rejected


def entry_key(entry):
  """What tells one indexed clip from another: its file (or name) and its times as listed."""
  return json.dumps([entry['file'] or entry['name'], entry['start'], entry['end']])


def _entry(spec, **fields):
  return {'file': spec.path, 'name': spec.name, 'start': spec.start, 'end': spec.end, **fields}


def index_settings(model, clips):
  """What index.json holds: the model's identity, its config (to embed queries with) and the
  clips per file."""
  return {'model': model.identity(), 'clips': int(clips),
          'config': json.loads(model.config.to_json_best_effort())}


def _part_names(index_dir):
  directory = os.path.join(index_dir, PARTS)
  if not os.path.isdir(directory):
    return []
  return sorted(n for n in os.listdir(directory) if n.isdigit())


def read_index(index_dir):
  """(settings of index.json, va [N, va], vat [N, vat], entries [N], unreadable) of an index;
  entries and unreadable as in the parts' manifests."""
  path = os.path.join(index_dir, INDEX_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f'no index {index_dir} (no {path}); make one with python -m mmv.embed')
  with open(path) as f:
    settings = json.load(f)
  va, vat, entries, unreadable = [], [], [], []
  for name in _part_names(index_dir):
    part = os.path.join(index_dir, PARTS, name)
    with open(os.path.join(part, MANIFEST)) as f:
      manifest = json.load(f)
    va.append(np.load(os.path.join(part, 'va.npy'), allow_pickle=False))
    vat.append(np.load(os.path.join(part, 'vat.npy'), allow_pickle=False))
    if not len(va[-1]) == len(vat[-1]) == len(manifest['entries']):
      raise ValueError(f'{part} holds {len(va[-1])} and {len(vat[-1])} embeddings for '
                       f'{len(manifest["entries"])} files: not a part mmv.embed wrote')
    entries += manifest['entries']
    unreadable += manifest['unreadable']
  m = settings['model']['model']
  return (settings, np.concatenate(va) if va else np.zeros([0, m['va_dim']], np.float32),
          np.concatenate(vat) if vat else np.zeros([0, m['vat_dim']], np.float32),
          entries, unreadable)


def _start_index(index_dir, settings):
  """Writes index.json for a new index; refuses an index of another model, step or clips."""
  path = os.path.join(index_dir, INDEX_FILE)
  if os.path.exists(path):
    with open(path) as f:
      existing = json.load(f)
    old = existing['model']
    if old != settings['model']:
      raise IndexRefused(f'{index_dir} was made with another model or checkpoint (step '
                         f'{old["step"]} of {old["workdir"]}): give another --output, or '
                         'extend it with that model')
    if existing['clips'] != settings['clips']:
      raise IndexRefused(f'{index_dir} was made with --clips={existing["clips"]}: give another '
                         '--output, or extend it with that --clips')
    return
  if os.path.exists(index_dir) and not os.path.isdir(index_dir):
    raise IndexRefused(f'{index_dir} is a file, not an index directory: give another --output')
  if os.path.isdir(index_dir) and os.listdir(index_dir):
    raise IndexRefused(f'{index_dir} is a directory that holds no index ({INDEX_FILE}) but '
                       'other files: give a new or empty --output')
  os.makedirs(index_dir, exist_ok=True)
  with open(path + '.tmp', 'w') as f:
    json.dump(settings, f, indent=1)
  os.replace(path + '.tmp', path)


def _write_part(index_dir, number, va, vat, entries, unreadable):
  """Writes part `number` under a temporary name, then renames it into place (atomic)."""
  parts = os.path.join(index_dir, PARTS)
  final = os.path.join(parts, f'{number:05d}')
  tmp = os.path.join(parts, f'.{number:05d}.tmp')
  os.makedirs(tmp)
  try:
    np.save(os.path.join(tmp, 'va.npy'), va, allow_pickle=False)
    np.save(os.path.join(tmp, 'vat.npy'), vat, allow_pickle=False)
    with open(os.path.join(tmp, MANIFEST), 'w') as f:
      json.dump({'entries': entries, 'unreadable': unreadable}, f, indent=1)
    os.rename(tmp, final)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


# Files decoded and held at once: a part (--part_size files) is embedded in groups of these, so
# that memory holds a group's decoded frames, not a part's (minutes of video are ~50 MB each).
READ_GROUP = 16


def _embed_chunk(model, specs, clips, batch_size):
  """(va, vat, entries, unreadable) of a chunk of specs, embedded READ_GROUP files at a time."""
  groups = [_embed_group(model, specs[i:i + READ_GROUP], clips, batch_size)
            for i in range(0, len(specs), READ_GROUP)] or [_embed_group(model, [], clips,
                                                                       batch_size)]
  va, vat, entries, unreadable = zip(*groups)
  return (np.concatenate(va), np.concatenate(vat), [e for g in entries for e in g],
          [u for g in unreadable for u in g])


def _embed_group(model, specs, clips, batch_size):
  """(va, vat, entries, unreadable) of a few specs, decoded together."""
  read, unreadable = {'video': [], 'audio': []}, []
  for spec in specs:
    try:
      modality, clip = model.inputs.read_media(spec)
    except media_inputs.UnreadableInput as e:
      unreadable.append(_entry(spec, reason=str(e).removeprefix(f'{spec.name}: ')))
      continue
    read[modality].append((spec, clip))
  dims = model.config.model
  va = [np.zeros([0, dims.va_dim], np.float32)]
  vat = [np.zeros([0, dims.vat_dim], np.float32)]
  entries = []
  for modality, pairs in read.items():
    if not pairs:
      continue
    embeddings, failed = model.embed_clips([c for _, c in pairs], modality, num_clips=clips,
                                           batch_size=batch_size)
    unreadable += [_entry(pairs[i][0], reason='its frames or sound could not be decoded')
                   for i in failed]
    if embeddings is None:
      continue
    kept = [spec for i, (spec, _) in enumerate(pairs) if i not in failed]
    entries += [_entry(spec, modality=modality, labels=list(spec.labels),
                       clip_times=np.round(times, 3).tolist())
                for spec, times in zip(kept, embeddings.clip_times)]
    va.append(embeddings.va)
    # Sound through a `disjoint` head has no way into S_vat: zero rows, which no text matches.
    vat.append(embeddings.vat if embeddings.vat is not None else
               np.zeros([len(kept), dims.vat_dim], np.float32))
  return np.concatenate(va), np.concatenate(vat), entries, unreadable


def build_index(model, specs, index_dir, *, clips=4, batch_size=None, part_size=256,
                rejected=(), progress=True):
  """Embeds `specs` (ClipSpecs) into the index `index_dir`, skipping those already there (or
  listed unreadable); returns {'indexed', 'new', 'already', 'unreadable': [entries of this
  run]}. `rejected`: [(where, why)] of inputs that are not clips (CSV rows): listed unreadable."""
  if part_size < 1:
    raise IndexRefused(f'--part_size must be at least 1, got {part_size}')
  _start_index(index_dir, index_settings(model, clips))
  parts = os.path.join(index_dir, PARTS)
  if os.path.isdir(parts):  # Chunks an interrupted run left unfinished (never renamed).
    for name in os.listdir(parts):
      if name.startswith('.') and name.endswith('.tmp'):
        shutil.rmtree(os.path.join(parts, name))
  _, _, _, entries, listed = read_index(index_dir)
  done = {entry_key(e) for e in entries + listed}
  todo = []
  for spec in specs:  # A clip listed twice is embedded once.
    key = entry_key(_entry(spec))
    if key not in done:
      done.add(key)
      todo.append(spec)
  rows = [{'file': None, 'name': where, 'start': None, 'end': None, 'reason': why}
          for where, why in rejected]
  rows = [r for r in rows if entry_key(r) not in done]
  chunks = [todo[i:i + part_size] for i in range(0, len(todo), part_size)]
  number = int(max(_part_names(index_dir), default=-1)) + 1
  new, unreadable = 0, []
  with tqdm.tqdm(total=len(todo), unit='file', disable=None if progress else True,
                 file=sys.stderr) as bar:
    for k, chunk in enumerate(chunks or ([[]] if rows else [])):
      va, vat, chunk_entries, chunk_unreadable = _embed_chunk(model, chunk, clips, batch_size)
      chunk_unreadable = (rows if k == 0 else []) + chunk_unreadable
      _write_part(index_dir, number + k, va, vat, chunk_entries, chunk_unreadable)
      new += len(chunk_entries)
      unreadable += chunk_unreadable
      bar.update(len(chunk))
  return {'indexed': len(entries) + new, 'new': new, 'already': len(specs) - len(todo),
          'unreadable': unreadable}


def define_flags():
  """The command line (defined only when run, so importing this module defines no flags)."""
  flags.DEFINE_string('workdir', None, 'The training run (or imported checkpoint) directory.')
  flags.DEFINE_integer('step', None, 'Checkpoint step; the latest when left out.')
  config_flags.DEFINE_config_file('config', None, 'Config file; default: WORKDIR/config.json.',
                                  lock_config=True)
  flags.DEFINE_string('input', None, 'A directory of media files, or a CSV '
                      'video_path,start,end[,label].')
  flags.DEFINE_string('output', None, 'The index directory (created, or extended).')
  flags.DEFINE_integer('clips', 4, 'Evenly spaced clips per file whose embeddings are averaged.')
  flags.DEFINE_integer('batch_size', None, 'Clips per batch (of whole files, split over the '
                       'devices); default eval.batch_size.')
  flags.DEFINE_integer('part_size', 256, 'Files per part written: what an interruption loses.')
  flags.DEFINE_enum('dtype', 'float32', inference.DTYPES, 'Compute dtype of the model.')
  flags.DEFINE_bool('progress', True, 'A progress bar on stderr (on a terminal).')
  flags.mark_flags_as_required(['workdir', 'input', 'output'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  tf.config.set_visible_devices([], 'GPU')
  ckpt_lib.quiet_read_only_opens()
  f = flags.FLAGS
  try:
    specs, rejected = list_inputs(f.input)
    model = inference.load(f.workdir, f.step, f.config, dtype=f.dtype)
    report = build_index(model, specs, f.output, clips=f.clips, batch_size=f.batch_size,
                         part_size=f.part_size, rejected=rejected, progress=f.progress)
  except (IndexRefused, FileNotFoundError, ValueError) as e:
    raise SystemExit(f'error: {e}') from None
  print(f'{f.output}: {report["indexed"]} files indexed, {report["new"]} new, '
        f'{report["already"]} already there (step {model.step} of {f.workdir})')
  if report['unreadable']:
    print(f'skipped {len(report["unreadable"])} unreadable:')
    for u in report['unreadable']:
      print(f'  {u["name"]}: {u["reason"]}')


if __name__ == '__main__':
  define_flags()
  app.run(main)
