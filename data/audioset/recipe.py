r"""AudioSet segment lists → the converter's clip CSV and a labels.txt in ontology index order.

    python data/audioset/recipe.py \
        --segments /data/audioset/balanced_train_segments.csv \
                   /data/audioset/unbalanced_train_segments.csv \
        --class_labels /data/audioset/class_labels_indices.csv \
        --video_root /data/audioset/videos --output_dir /data/audioset/shards --name train
    python -m mmv.ingest.convert --input_csv /data/audioset/shards/train.csv \
        --video_root /data/audioset/videos --output_dir /data/audioset/shards --name train \
        --num_shards 1024

Inputs, as Google publishes them (research.google.com/audioset/download.html):
  segment lists   `# ` comment lines, then rows `YTID, start_seconds, end_seconds, "mid,mid"`
                  (balanced_train_segments.csv, unbalanced_train_segments.csv,
                  eval_segments.csv); several lists given together make one split
  class labels    class_labels_indices.csv: `index,mid,display_name` (527 classes)
  videos          anywhere under --video_root, as `<YTID>_<start:06d>_<end:06d>.<ext>` (a file
                  already cut to the segment, the whole file is the clip) or `<YTID>.<ext>`
                  (the whole video, cut to the segment's times): the names the Kinetics
                  benchmark reader accepts, found as `mmv.benchmarks.media_index` finds them

Writes OUTPUT_DIR/NAME.csv (`video_path,start,end,label`: the path relative to --video_root,
the display names of the segment's classes joined by ';') and OUTPUT_DIR/labels.txt (the
display names in index order). Convert into the same OUTPUT_DIR: the converter then takes label
ids from that labels.txt, so id k is AudioSet class k, whatever labels a split happens to hold.
A segment whose video is not on disk (YouTube videos disappear) and a segment listed twice
are skipped and counted; a malformed row or a label id that class_labels_indices.csv lacks is
an error naming the file and line. An existing NAME.csv is replaced only with --overwrite; an
existing labels.txt that differs is an error.
"""

import argparse
import csv
import os
import sys

from mmv.benchmarks import media_index

PUBLISHED_CLASSES = 527
LABEL_COLUMNS = ('index', 'mid', 'display_name')
CSV_HEADER = ('video_path', 'start', 'end', 'label')


class RecipeError(ValueError):
  """Bad input, said in one line."""


def read_class_labels(path):
  """(display names in index order, {mid: display name}) of class_labels_indices.csv."""
  with open(path, newline='') as f:
    reader = csv.DictReader(f)
    missing = [c for c in LABEL_COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
      raise RecipeError(f'{path}: no column {missing} (expected {",".join(LABEL_COLUMNS)})')
    rows = list(reader)
  if [row['index'] for row in rows] != [str(i) for i in range(len(rows))]:
    raise RecipeError(f'{path}: indices are not 0, 1, 2, ... in file order')
  names = tuple(row['display_name'] for row in rows)
  by_mid = {row['mid']: row['display_name'] for row in rows}
  if len(by_mid) != len(rows):
    raise RecipeError(f'{path}: a mid is listed twice')
  if len(set(names)) != len(names):
    raise RecipeError(f'{path}: a display name is listed twice')
  bad = [n for n in names if ';' in n or not n.strip()]
  if bad:
    raise RecipeError(f'{path}: display names {bad[:3]} are empty or hold ";" (the '
                      "converter's label separator)")
  return names, by_mid


def read_segments(path):
  """[(YTID, start, end, (mid, ...), line)] of a segment list; comment lines are skipped."""
  segments = []
  with open(path, newline='') as f:
    reader = csv.reader(f, skipinitialspace=True)
    for row in reader:
      if not row or row[0].startswith('#'):
        continue
      where = f'{path} line {reader.line_num}'
      if len(row) != 4:
        raise RecipeError(f'{where}: expected `YTID, start_seconds, end_seconds, "mid,..."`, '
                          f'got {len(row)} fields')
      try:
        start, end = float(row[1]), float(row[2])
      except ValueError:
        raise RecipeError(f'{where}: times {row[1]!r}, {row[2]!r} are not seconds') from None
      mids = tuple(m.strip() for m in row[3].split(',') if m.strip())
      if not mids:
        raise RecipeError(f'{where}: segment {row[0]} has no label')
      segments.append((row[0].strip(), start, end, mids, where))
  return segments


def video_of(ytid, start, end, videos):
  """(path, clip start, clip end) of a segment: a file cut to it (times empty: the whole
  file), else the whole video cut to the segment; None when neither is on disk."""
  cut = videos.get(f'{ytid}_{int(start):06d}_{int(end):06d}')
  if cut:
    return cut[0], None, None
  whole = videos.get(ytid)
  return (whole[0], start, end) if whole else None


def _seconds(value):
  return '' if value is None else f'{value:g}'


def make_rows(segments, by_mid, videos, video_root):
  """(converter CSV rows, {reason: [segment]}) for the segments of one split."""
  rows, skipped, seen = [], {}, set()
  for ytid, start, end, mids, where in segments:
    unknown = [m for m in mids if m not in by_mid]
    if unknown:
      raise RecipeError(f'{where}: label ids {unknown} of {ytid} are not in the class labels')
    key = (ytid, start, end)
    if key in seen:
      skipped.setdefault('listed twice', []).append(f'{ytid} {start:g}-{end:g}')
      continue
    seen.add(key)
    found = video_of(ytid, start, end, videos)
    if found is None:
      skipped.setdefault('video not on disk', []).append(f'{ytid} {start:g}-{end:g}')
      continue
    path, clip_start, clip_end = found
    rows.append((os.path.relpath(path, video_root), _seconds(clip_start), _seconds(clip_end),
                 ';'.join(by_mid[m] for m in mids)))
  return rows, skipped


def write_outputs(output_dir, name, rows, class_names, overwrite):
  """Writes NAME.csv and labels.txt (each complete or not at all); returns their paths."""
  csv_path = os.path.join(output_dir, f'{name}.csv')
  labels_path = os.path.join(output_dir, 'labels.txt')
  labels = ''.join(f'{n}\n' for n in class_names)
  if os.path.exists(csv_path) and not overwrite:
    raise RecipeError(f'{csv_path} exists; pass --overwrite to replace it')
  if os.path.exists(labels_path):
    with open(labels_path) as f:
      if f.read() != labels:
        raise RecipeError(f'{labels_path} exists and is not this class list; converting with '
                          'it would give other label ids (delete it, or use another '
                          '--output_dir)')
  os.makedirs(output_dir, exist_ok=True)
  with open(csv_path + '.tmp', 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(CSV_HEADER)
    writer.writerows(rows)
  os.replace(csv_path + '.tmp', csv_path)
  if not os.path.exists(labels_path):
    with open(labels_path + '.tmp', 'w') as f:
      f.write(labels)
    os.replace(labels_path + '.tmp', labels_path)
  return csv_path, labels_path


def run(segment_paths, class_labels, video_root, output_dir, name, overwrite=False):
  """The recipe; returns the report's lines."""
  if not os.path.isdir(video_root):
    raise RecipeError(f'--video_root {video_root!r} is not a directory')
  class_names, by_mid = read_class_labels(class_labels)
  segments = [s for path in segment_paths for s in read_segments(path)]
  videos = media_index.media_by_stem(video_root)
  rows, skipped = make_rows(segments, by_mid, videos, video_root)
  if not rows:
    raise RecipeError(f'none of the {len(segments)} segments has its video under '
                      f'{video_root!r}; nothing written')
  csv_path, labels_path = write_outputs(output_dir, name, rows, class_names, overwrite)
  lines = [f'{len(segments)} segments listed, {len(rows)} written to {csv_path}',
           f'{len(class_names)} classes in {labels_path} (AudioSet publishes '
           f'{PUBLISHED_CLASSES})']
  for reason, which in sorted(skipped.items()):
    more = ', ...' if len(which) > 5 else ''
    lines.append(f'skipped {len(which)}, {reason}: {", ".join(which[:5])}{more}')
  lines.append(f'next: python -m mmv.ingest.convert --input_csv {csv_path} --video_root '
               f'{video_root} --output_dir {output_dir} --name {name} --num_shards N')
  return lines


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--segments', nargs='+', required=True,
                      help='Segment list CSVs (e.g. balanced_train_segments.csv), one split.')
  parser.add_argument('--class_labels', required=True, help='class_labels_indices.csv')
  parser.add_argument('--video_root', required=True, help='Where the videos are.')
  parser.add_argument('--output_dir', required=True,
                      help='Where NAME.csv and labels.txt go: the converter output directory.')
  parser.add_argument('--name', required=True, help='The split: NAME.csv, shards NAME-*.')
  parser.add_argument('--overwrite', action='store_true', help='Replace an existing NAME.csv.')
  args = parser.parse_args(argv)
  try:
    lines = run(args.segments, args.class_labels, args.video_root, args.output_dir, args.name,
                args.overwrite)
  except (RecipeError, OSError) as e:
    sys.exit(f'audioset recipe: {e}')
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
