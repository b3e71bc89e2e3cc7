"""A conversion's new files, staged in a hidden directory, and their move into place.

Both converter paths write a split's new set of shards, its new labels.txt and vocab.txt and
its report into a staging directory, `OUTPUT_DIR/.NAME.convert` (local) or
`OUTPUT_DIR/.NAME.beam-DIGEST` (Beam): hidden, so that no reader's `NAME-*-of-*` takes anything
in it. Once all is complete, the converter writes there a manifest of the move (`begin_move`)
and makes it (`finish_move`): it removes the split's old shards, of any shard count, then moves
the new shards, the text files and, last, the report into place, and removes the staging
directory. The old shards go only once the new set is complete (in staging), and before any
new shard appears, so that at no point are two sets visible: a process stopped during the move
leaves part of the old set, or part of the new one, which readers refuse as incomplete
(`records.split_files`). Every step can be made again, so the next conversion into OUTPUT_DIR
of that split (`finish_cut_short`) finishes a move cut short at any point, from the manifest.

Files go through tf.io.gfile: OUTPUT_DIR may be a gs:// path. TensorFlow is imported when
first used: the local converter's decoding workers import this module and need only PyAV.
"""

import json
import os
import re
import uuid

from mmv.ingest import clip_records
from mmv.data import shard_names

_MANIFEST = 'move.json'


def _gfile():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.gfile


def directory(output_dir, name, kind):
  """The staging directory of split `name`'s conversion `kind` ('convert', or 'beam-DIGEST')."""
  return os.path.join(output_dir, f'.{name}.{kind}')


def staged_path(staging, path):
  """Where `path` is written before the move: in `staging` when it goes into the directory
  `staging` is in, else hidden beside `path` (a rename within one file system)."""
  if os.path.dirname(path) == os.path.dirname(staging):
    return os.path.join(staging, os.path.basename(path))
  return os.path.join(os.path.dirname(path),
                      f'.{os.path.basename(path)}{os.path.basename(staging)}')


def shards_of(output_dir, name):
  """The shard files of `name` in `output_dir`, of any shard count."""
  if not _gfile().isdir(output_dir):
    return []
  sets = shard_names.shard_sets(_gfile().listdir(output_dir), name).values()
  return sorted(os.path.join(output_dir, f) for shards in sets for f in shards.values())


def refuse_existing(output_dir, name, overwrite):
  """The shards of `name` already in `output_dir`; ConversionError if any, unless
  `overwrite`."""
  existing = shards_of(output_dir, name)
  if existing and not overwrite:
    raise clip_records.ConversionError(
        f'{output_dir} already holds {name} shards ({existing[0]}, ...); pass --overwrite to '
        'replace them, or choose another --name')
  return existing


def temporary(path):
  """Where `path` is written before it is renamed: hidden, and unique, so that two attempts
  (a retried Beam worker) never mix."""
  parent, base = os.path.split(path)
  return os.path.join(parent, f'.{base}.tmp-{uuid.uuid4().hex}')


def write_text(path, text):
  """Writes `path` whole or not at all."""
  tmp = temporary(path)
  with _gfile().GFile(tmp, 'w') as f:
    f.write(text)
  _gfile().rename(tmp, path, overwrite=True)


def read_text(path):
  with _gfile().GFile(path) as f:
    return f.read()


def begin_move(staging, *, moves, remove, report, **extra):
  """Records the move of the complete staged files: `moves` [(staged path, final path)] in
  order, the report's last; `remove`, the old shards to delete first; `report`, the report
  dict `finish_move` returns; `extra`, what else the caller keeps (JSON)."""
  write_text(os.path.join(staging, _MANIFEST),
             json.dumps({'moves': moves, 'remove': remove, 'report': report, **extra}))


def finish_move(staging):
  """Makes the move `begin_move` recorded in `staging`, from wherever an earlier attempt
  stopped; returns the manifest (its report as the converter returns it)."""
  manifest = json.loads(read_text(os.path.join(staging, _MANIFEST)))
  moves = manifest['moves']
  # Until the first file is moved, whatever stands at an old shard's name is old.
  if all(_gfile().exists(src) for src, _ in moves):
    for path in manifest['remove']:
      if _gfile().exists(path):
        _gfile().remove(path)
  for src, dst in moves:
    if _gfile().exists(src):
      _gfile().rename(src, dst, overwrite=True)
  _gfile().rmtree(staging)
  report = manifest['report']
  for key in ('skipped', 'short', 'packets_skipped', 'audio_clipped'):  # JSON made lists.
    report[key] = [tuple(item) for item in report.get(key, [])]
  return manifest


def finish_cut_short(output_dir, name):
  """Finishes the moves of split `name` into `output_dir` that were cut short (a staging
  directory with a manifest), printing a line for each; returns their manifests."""
  if not _gfile().isdir(output_dir):
    return []
  pattern = r'\.' + re.escape(name) + r'\.(convert|beam-[0-9a-f]+)/?'
  finished = []
  for entry in sorted(_gfile().listdir(output_dir)):
    staging = os.path.join(output_dir, entry.rstrip('/'))
    if re.fullmatch(pattern, entry) and _gfile().exists(os.path.join(staging, _MANIFEST)):
      finished.append(finish_move(staging))
      print(f'finished moving the {name} files of a conversion cut short into {output_dir} '
            f'(from {staging})', flush=True)
  return finished
