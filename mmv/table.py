"""The MMV paper's results table with our runs beside it.

    python -m mmv.table --records A.json B.json ... [--markdown | --csv]

Each file is an evaluation record of `mmv.evaluate` (its `WORKDIR/eval/NAME/step_N.json`, or
the list its `--output` writes), of `mmv.finetune`, or of the AudioSet benchmark: one benchmark
of one checkpoint. Records of one training run (the workdir they record; the backbone for
records without one) make one row. The paper's rows come first (mmv/evaluators/paper.py),
then a row of chance levels, then ours. Columns: one per benchmark and protocol, the paper's
(UCF101 / HMDB51 Linear and FT, ESC-50 Linear, AudioSet MLP, K600 Linear, zero-shot
retrieval on MSRVTT and YouCook2), then those of our records that the paper has not
(e.g. the demo's synthetic benchmark). Each of our cells measured by another protocol than the
published one carries a note (a), (b), ... saying how it differs; the paper's figures are
comparable only with cells without one. Without --records it prints the paper's table alone.
"""

import argparse
import csv
import io
import json
import os
import sys

from mmv.evaluators import paper
from mmv.evaluators import report

# The metrics a table cell shows, by name, and the protocol heading of their column.
PROTOCOL_TITLES = {
    'linear_top1': 'Linear',
    'finetune_top1': 'FT',
    'mlp_mAP': 'MLP',
    'linear_mAP': 'Linear mAP',
    'zero_shot_top1': 'zero-shot',
    't2v_R@1': 'R@1',
    't2v_R@5': 'R@5',
    't2v_R@10': 'R@10',
    't2v_MedR': 'MedR',
}
# Other names a record may give a column's metric: the AudioSet MLP probe's mAP.
ALIASES = {'mAP': 'mlp_mAP'}
BENCHMARK_TITLES = {'ucf101': 'UCF101', 'hmdb51': 'HMDB51', 'esc50': 'ESC-50',
                    'audioset': 'AS', 'kinetics600': 'K600', 'msrvtt': 'MSRVTT',
                    'youcook2': 'YouCook2'}
HEAD = ('Method', 'f_v (#params)', 'Train data', 'years', 'Mod.')
_RECORD_KEYS = ('benchmark', 'step', 'backbone', 'protocol', 'metrics')


class RecordError(ValueError):
  """A file that is not a record the table can show, named with why."""


def load_records(paths):
  """[(path, record)] of each file: a record, or a list of records."""
  out = []
  for path in paths:
    try:
      with open(path) as f:
        content = json.load(f)
    except (OSError, ValueError) as e:
      raise RecordError(f'{path}: cannot be read as JSON ({e})') from e
    for record in content if isinstance(content, list) else [content]:
      missing = [k for k in _RECORD_KEYS if not isinstance(record, dict) or k not in record]
      if missing:
        raise RecordError(f'{path}: not an evaluation record (no {", ".join(missing)}); '
                          'pass the JSON files mmv.evaluate or mmv.finetune write')
      out.append((path, record))
  return out


def benchmark_key(record):
  """The record's benchmark as a column names it: kinetics with its number of classes
  ('kinetics600' is the paper's K600)."""
  name = report.canonical_benchmark(record['benchmark'])
  if name == 'kinetics':
    classes = _counts(record).get('classes')
    return f'kinetics{classes}' if classes else name
  return name


def _counts(record):
  """{'classes': n, 'candidates': n} that the record's protocol states (first split)."""
  protocol, out = record['protocol'], {}
  for prepared in protocol.get('prepared', {}).values():
    if prepared.get('num_classes'):
      out['classes'] = prepared['num_classes']
    break
  for roles in protocol.get('videos_read', {}).values():
    if roles.get('retrieval_test'):
      out['candidates'] = roles['retrieval_test']
    break
  return out


def cells_of(path, record):
  """{(benchmark, metric): value} of the metrics the table shows; a record with none is an
  error naming the file."""
  bench = benchmark_key(record)
  cells = {}
  for metric, value in record['metrics'].items():
    metric = ALIASES.get(metric, metric)
    if metric in PROTOCOL_TITLES:
      cells[(bench, metric)] = value
  if not cells:
    raise RecordError(
        f'{path}: record of benchmark {record["benchmark"]!r} has no metric the table shows '
        f'(it has {sorted(record["metrics"]) or "none"}; the table shows '
        f'{", ".join(list(PROTOCOL_TITLES) + list(ALIASES))})')
  return cells


def protocol_note(record):
  """Why the record's protocol is not the published one, or None when it is."""
  protocol = record['protocol']
  if protocol.get('published') is True:
    return None
  bench = record['benchmark']
  if 'published' not in protocol:
    return f'{bench}: the record does not say whether its protocol is the published one'
  differs = protocol.get('differs_from_published')
  if differs:
    return f'{bench}: differs from the published protocol in {", ".join(differs)}'
  source = protocol.get('source')
  return f'{bench}: no published protocol' + (f'; measured by {source}' if source else '')


def _row_key(record):
  run = record.get('run') or {}
  return run.get('workdir') or f'backbone {record["backbone"]}'


class OurRow:
  """One run's records: its cells, their notes and steps."""

  def __init__(self, key, record):
    self.key, self.run, self.backbone = key, record.get('run') or {}, record['backbone']
    self.cells, self.notes, self.steps, self.sources = {}, {}, {}, {}
    self.counts = {}  # {benchmark: its record's counts of classes and retrieval candidates}

  def add(self, path, record, cells):
    note = protocol_note(record)
    for column, value in cells.items():
      if column in self.cells:
        raise RecordError(
            f'{path}: {column[0]} {column[1]} of {self.key} is also in {self.sources[column]} '
            f'(steps {self.steps[column]} and {record["step"]}): pass one record per '
            'benchmark and run')
      self.cells[column], self.steps[column], self.sources[column] = value, record['step'], path
      if note:
        self.notes[column] = note
    self.counts[benchmark_key(record)] = _counts(record)

  def head(self):
    run = self.run
    name = os.path.basename(str(self.key).rstrip('/')) if run.get('workdir') else self.key
    steps = sorted(set(self.steps.values()))
    method = f' {run["method"]}' if run.get('method') else ''
    label = f'ours{method}: {name} (step {", ".join(map(str, steps))})'
    towers = run.get('towers') or []
    modalities = ''.join(t[0].upper() for t in ('video', 'audio', 'text') if t in towers)
    data = '; '.join(run.get('train_data', []))
    return (label, self.backbone, data, '', modalities)


def our_rows(records):
  """[OurRow] of (path, record) pairs, in the order their runs first appear."""
  rows = {}
  for path, record in records:
    cells = cells_of(path, record)
    key = _row_key(record)
    rows.setdefault(key, OurRow(key, record)).add(path, record, cells)
  return list(rows.values())


def columns(rows):
  """[(benchmark, metric)]: the paper's, then our rows' others (benchmarks in order of
  appearance, protocols in the order of PROTOCOL_TITLES)."""
  others = []
  for row in rows:
    others += [c for c in row.cells if c not in paper.COLUMNS and c not in others]
  benchmarks = list(dict.fromkeys(bench for bench, _ in others))
  protocol_order = list(PROTOCOL_TITLES)
  return list(paper.COLUMNS) + sorted(
      others, key=lambda c: (benchmarks.index(c[0]), protocol_order.index(c[1])))


def column_title(column):
  if column in paper.COLUMNS:
    return paper.COLUMNS[column]
  bench, metric = column
  return f'{BENCHMARK_TITLES.get(bench, bench)} {PROTOCOL_TITLES[metric]}'


def chance(column, rows):
  """The chance level of `column` (percent; MedR a rank): top-1 100 / classes, R@k
  100·k / candidates, MedR (candidates + 1) / 2, from the paper's benchmark sizes or else our
  records' counts; None for a multi-label mAP (it depends on the classes' frequencies)."""
  bench, metric = column
  counts = {'classes': paper.CLASSES.get(bench), 'candidates': paper.CANDIDATES.get(bench)}
  for row in rows:
    for what, n in row.counts.get(bench, {}).items():
      counts[what] = counts[what] or n
  if metric.endswith('_top1') and counts['classes']:
    return 100.0 / counts['classes']
  n = counts['candidates']
  if metric.startswith('t2v_R@') and n:
    return 100.0 * int(metric[len('t2v_R@'):]) / n
  if metric == 't2v_MedR' and n:
    return (n + 1) / 2
  return None


def _ours(value):
  return f'{value:.2f}'


def _paper(value):
  return '' if value is None else str(value)


def _years(value):
  return f'{value:g}'


def table(rows):
  """(header, body, notes): body rows of (kind, cells) with kind 'paper' | 'chance' | 'ours',
  each cell a string ('' where there is no figure); `notes` [(mark, text)] for our cells
  measured by another protocol, whose cells end in ' (mark)'."""
  cols = columns(rows)
  header = list(HEAD) + [column_title(c) for c in cols]
  body = []
  for row in paper.ROWS:
    body.append(('paper', [row.method, row.backbone, row.data, _years(row.years),
                           row.modalities] + [_paper(row.figure(c)) for c in cols]))
  body.append(('chance', ['chance', '', '', '', ''] +
               ['' if (v := chance(c, rows)) is None else _ours(v) for c in cols]))
  marks = {}
  for row in rows:
    cells = []
    for c in cols:
      if c not in row.cells:
        cells.append('')
        continue
      cell = _ours(row.cells[c])
      if c in row.notes:
        mark = marks.setdefault(row.notes[c], chr(ord('a') + len(marks)))
        cell += f' ({mark})'
      cells.append(cell)
    body.append(('ours', list(row.head()) + cells))
  notes = [(mark, text) for text, mark in marks.items()]
  return header, body, notes


def render_markdown(rows):
  header, body, notes = table(rows)
  escape = lambda cell: cell.replace('|', '\\|')
  lines = ['| ' + ' | '.join(map(escape, header)) + ' |', '|' + ' --- |' * len(header)]
  lines += ['| ' + ' | '.join(map(escape, cells)) + ' |' for _, cells in body]
  lines += ['', 'Paper: MMV (Alayrac et al. 2020), comparison with the state of the art; '
            'empty: not reported, /: not applicable. ' + paper.SUPERVISED_NOTE,
            'Ours: mean over the evaluated splits (UCF101/HMDB51 linear: split 1, as '
            'published); chance: top-1 100/classes, R@k 100k/candidates, MedR (candidates+1)/2.']
  if rows:
    lines.append('Our cells without a note were measured by the published protocol.')
  lines += [f'({mark}) {text}' for mark, text in notes]
  return '\n'.join(lines) + '\n'


def render_csv(rows):
  """One line per table row: a `source` column (paper | chance | ours), the table's columns,
  each cell a number or empty, and `notes` (why our cells' protocols differ: 'TITLE, ...: why'
  per reason, separated by '; ')."""
  header, body, notes = table(rows)
  texts = dict(notes)
  out = io.StringIO()
  writer = csv.writer(out, lineterminator='\n')
  writer.writerow(['source'] + header + ['notes'])
  for kind, cells in body:
    plain, row_notes = [], {}  # {note: the titles of the row's cells it is about}
    for title, cell in zip(header, cells):
      if cell.endswith(')') and ' (' in cell and title not in HEAD:
        cell, mark = cell[:-1].rsplit(' (', 1)
        row_notes.setdefault(texts[mark], []).append(title)
      plain.append(cell)
    writer.writerow([kind] + plain + ['; '.join(f'{", ".join(titles)}: {text}'
                                                for text, titles in row_notes.items())])
  return out.getvalue()


def main(argv=None):
  parser = argparse.ArgumentParser(prog='python -m mmv.table', description=__doc__.split(
      '\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--records', nargs='*', default=[], metavar='JSON',
                      help='evaluation records (mmv.evaluate, mmv.finetune): one row per run')
  form = parser.add_mutually_exclusive_group()
  form.add_argument('--markdown', action='store_true', help='a markdown table (the default)')
  form.add_argument('--csv', action='store_true', help='CSV, one line per row')
  args = parser.parse_args(argv)
  try:
    rows = our_rows(load_records(args.records))
  except RecordError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  sys.stdout.write(render_csv(rows) if args.csv else render_markdown(rows))
  return 0


if __name__ == '__main__':
  sys.exit(main())
