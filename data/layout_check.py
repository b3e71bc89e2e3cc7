"""Checks a downloaded benchmark tree against what its `mmv.benchmarks` reader expects.

Shared by the check scripts of the datasets the evaluation reads in their official layout
(data/ucf101, hmdb51, esc50, msrvtt, youcook2, kinetics600, voc2007, imagenet): each names
its benchmark reader and the counts its authors published. The reader itself, imported rather
than re-implemented, reads the official files, exactly as `python -m mmv.evaluate` will; this
module counts what it found (per split and side, the clips listed and those whose file is on
disk), names the clips whose file is missing (evaluation skips and counts them), and sets the
counts beside the published ones. Nothing is converted or written.
"""

import argparse
import dataclasses
import sys


@dataclasses.dataclass(frozen=True)
class Published:
  """What a dataset's authors published: the number of classes (0: none) and the clips of
  each side of each split, {split: {'train': n, 'test': n}} (only those published)."""
  classes: int = 0
  splits: dict = dataclasses.field(default_factory=dict)


def counts(layout):
  """{split: {side: (clips listed, clips on disk)}} of a reader's Layout, and the names of
  the clips whose file is not on disk, sorted."""
  per_part = {part: (len(specs), sum(spec.path is not None for spec in specs))
              for part, specs in layout.clips.items()}
  table = {}
  for split, sides in layout.splits.items():
    table[split] = {side: (sum(per_part[p][0] for p in parts), sum(per_part[p][1] for p in parts))
                    for side, parts in sides.items()}
  missing = sorted({spec.name for specs in layout.clips.values() for spec in specs
                    if spec.path is None})
  return table, missing


def report(name, layout, published, data_dir):
  """The check's lines and whether any listed clip is on disk."""
  table, missing = counts(layout)
  lines = []
  if published.classes or layout.class_names:
    lines.append(f'{len(layout.class_names)} classes (published: {published.classes})')
  for split, sides in table.items():
    parts = []
    for side, (listed, on_disk) in sides.items():
      expected = published.splits.get(split, {}).get(side)
      note = '' if expected in (None, listed) else f', published {expected}'
      parts.append(f'{side} {listed} listed{note}, {on_disk} on disk')
    lines.append(f'split {split}: ' + '; '.join(parts))
  if missing:
    more = ', ...' if len(missing) > 10 else ''
    lines.append(f'not on disk (evaluation skips and counts them): {len(missing)} '
                 f'({", ".join(missing[:10])}{more})')
  lines.append(f'evaluate: python -m mmv.evaluate --benchmark {name} --data_dir {data_dir} '
               '--workdir WORKDIR')
  return lines, any(on_disk for sides in table.values() for _, on_disk in sides.values())


def run(name, read_layout, published, data_dir):
  """The check of `data_dir`; returns (lines, status): status 1 when nothing is on disk."""
  layout = read_layout(data_dir)
  lines, any_on_disk = report(name, layout, published, data_dir)
  if not any_on_disk:
    lines.append(f'no listed file is on disk under {data_dir!r}: extract the media there')
  return lines, 0 if any_on_disk else 1


def main(name, read_layout, published, argv=None, doc=None):
  """The command line of a check script: --data_dir DIR; one line on stderr for a bad tree."""
  parser = argparse.ArgumentParser(description=doc or __doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--data_dir', required=True, help='The downloaded tree.')
  args = parser.parse_args(argv)
  try:
    lines, status = run(name, read_layout, published, args.data_dir)
  except (OSError, ValueError, KeyError, TypeError) as e:  # The reader's one-line errors.
    sys.exit(f'{name} check: {type(e).__name__}: {e}')
  print('\n'.join(lines))
  sys.exit(status)
