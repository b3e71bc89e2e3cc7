r"""Checks a Kinetics-600 tree for `mmv.evaluate --benchmark kinetics` and writes the
converter's clip CSV of each list split.

    python data/kinetics600/recipe.py --data_dir /data/kinetics600 \
        --output_dir /data/kinetics600/shards
    python -m mmv.ingest.convert --input_csv /data/kinetics600/shards/train.csv \
        --video_root /data/kinetics600 --output_dir /data/kinetics600/shards --name train \
        --num_shards 256

The lists are DeepMind's Kinetics-600 CSVs (`label,youtube_id,time_start,time_end,split`:
train.csv, validate.csv, test.csv; the test list of the first release has no labels) anywhere
under --data_dir, the videos anywhere under it as `<youtube_id>_<start:06d>_<end:06d>.<ext>`
(cut to the clip) or `<youtube_id>.<ext>` (the whole video). The benchmark reader
(`mmv.benchmarks.kinetics`) reads them, exactly as the evaluation will (it needs no CSV from
here); the script prints its counts (data/layout_check.py) and, with --output_dir, writes for
each list split with labels (train, val, test) OUTPUT_DIR/<split>.csv, rows
`video_path,start,end,label` (the path relative to --data_dir; the clip times for a whole
video, none for a cut clip), and OUTPUT_DIR/labels.txt, the sorted label names (the reader's
ids), so that a conversion into OUTPUT_DIR gives every split the same ids. Clips whose video is
not on disk (every Kinetics download misses some) are left out of the CSVs and counted.
Existing CSVs are replaced only with --overwrite; an existing labels.txt that differs is an
error.
"""

import argparse
import csv
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import layout_check  # pylint: disable=g-import-not-at-top,wrong-import-position

from mmv.benchmarks import kinetics  # pylint: disable=g-import-not-at-top,wrong-import-position

PUBLISHED = layout_check.Published(classes=600)
CSV_HEADER = ('video_path', 'start', 'end', 'label')


class RecipeError(ValueError):
  """Bad input, said in one line."""


def _seconds(value):
  return '' if value is None else f'{value:g}'


def csv_rows(specs, data_dir):
  """Converter CSV rows of a part's ClipSpecs that have a file, and the number without."""
  rows = [(os.path.relpath(spec.path, data_dir),
           _seconds(None if spec.end is None else spec.start), _seconds(spec.end),
           spec.labels[0]) for spec in specs if spec.path is not None]
  return rows, len(specs) - len(rows)


def write_csvs(layout, data_dir, output_dir, overwrite):
  """Writes OUTPUT_DIR/<part>.csv and labels.txt; returns the report's lines."""
  bad = [n for n in layout.class_names if ';' in n]
  if bad:
    raise RecipeError(f"labels {bad[:3]} hold ';', the converter's label separator")
  paths = {part: os.path.join(output_dir, f'{part}.csv') for part in layout.clips}
  existing = [p for p in paths.values() if os.path.exists(p)]
  if existing and not overwrite:
    raise RecipeError(f'{existing[0]} exists; pass --overwrite to replace the CSVs')
  labels_path = os.path.join(output_dir, 'labels.txt')
  labels = ''.join(f'{n}\n' for n in layout.class_names)
  if os.path.exists(labels_path):
    with open(labels_path) as f:
      if f.read() != labels:
        raise RecipeError(f'{labels_path} exists and is not these labels; converting with it '
                          'would give other label ids (delete it, or use another --output_dir)')
  os.makedirs(output_dir, exist_ok=True)
  lines = []
  for part, path in sorted(paths.items()):
    rows, skipped = csv_rows(layout.clips[part], data_dir)
    with open(path + '.tmp', 'w', newline='') as f:
      writer = csv.writer(f)
      writer.writerow(CSV_HEADER)
      writer.writerows(rows)
    os.replace(path + '.tmp', path)
    lines.append(f'{path}: {len(rows)} clips ({skipped} not on disk left out)')
    lines.append(f'  python -m mmv.ingest.convert --input_csv {path} --video_root {data_dir} '
                 f'--output_dir {output_dir} --name {part} --num_shards N')
  if not os.path.exists(labels_path):
    with open(labels_path + '.tmp', 'w') as f:
      f.write(labels)
    os.replace(labels_path + '.tmp', labels_path)
  lines.append(f'{labels_path}: {len(layout.class_names)} labels')
  return lines


def run(data_dir, output_dir=None, overwrite=False):
  """The recipe; returns (report lines, exit status)."""
  layout = kinetics.read_layout(data_dir)
  lines, any_on_disk = layout_check.report('kinetics', layout, PUBLISHED, data_dir)
  if not any_on_disk:
    return lines + [f'no listed video is on disk under {data_dir!r}; nothing written'], 1
  if output_dir:
    lines += write_csvs(layout, data_dir, output_dir, overwrite)
  return lines, 0


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--data_dir', required=True, help='The lists and the videos.')
  parser.add_argument('--output_dir', help='Where <split>.csv and labels.txt go (the '
                      'converter output directory); without it, only the check.')
  parser.add_argument('--overwrite', action='store_true', help='Replace existing CSVs.')
  args = parser.parse_args(argv)
  try:
    lines, status = run(args.data_dir, args.output_dir, args.overwrite)
  except (OSError, ValueError, KeyError) as e:
    sys.exit(f'kinetics600 recipe: {type(e).__name__}: {e}')
  print('\n'.join(lines))
  sys.exit(status)


if __name__ == '__main__':
  main()
