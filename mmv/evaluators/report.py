"""An evaluation run's record (JSON), its scalars, and its markdown report beside the paper.

The record is what makes a number traceable: the benchmark, checkpoint step and backbone, the
protocol parameters the caller measured with (clips, crops, splits, videos listed, read and
skipped, ...), every split's full result (metrics and, for a probe, the C used and its CV
scores), and the mean over splits of the metrics — the number the paper reports.
"""

import json
import os
import re

import numpy as np

# MMV (Alayrac et al., 2020), FAC heads trained on HowTo100M + AudioSet. Linear: top-1 on frozen
# features, UCF101/HMDB51 split 1 (DeepMind's released UCF101 script reproduces these UCF101
# numbers), ESC-50 the mean over its 5 folds. Zero-shot retrieval: text→video on MSRVTT 1k-A
# test and YouCook2 val. Shown beside ours only for a record of the published protocol.
PAPER_NUMBERS = {
    ('s3d_g', 'ucf101', 'linear_top1'): 89.6,
    ('s3d_g', 'hmdb51', 'linear_top1'): 62.6,
    ('tsm_resnet50', 'ucf101', 'linear_top1'): 91.5,
    ('tsm_resnet50', 'hmdb51', 'linear_top1'): 66.7,
    ('tsm_resnet50x2', 'ucf101', 'linear_top1'): 91.8,
    ('tsm_resnet50x2', 'hmdb51', 'linear_top1'): 67.1,
    ('tsm_resnet50x2', 'esc50', 'linear_top1'): 88.9,
    ('tsm_resnet50x2', 'msrvtt', 't2v_R@1'): 9.3,
    ('tsm_resnet50x2', 'msrvtt', 't2v_R@5'): 23.0,
    ('tsm_resnet50x2', 'msrvtt', 't2v_R@10'): 31.1,
    ('tsm_resnet50x2', 'msrvtt', 't2v_MedR'): 38,
    ('tsm_resnet50x2', 'youcook2', 't2v_R@10'): 45.4,
    ('tsm_resnet50x2', 'youcook2', 't2v_MedR'): 13,
}
NO_NUMBER = '—'
# The paper reports figures on these (deflated image models), but no source at hand states them
# (nor its image protocol): none is shown, and the report says why.
NO_SOURCE = ('voc2007', 'imagenet')
# Result keys that are measurements, averaged over splits; the rest (C, counts) are protocol:
# linear probe `linear_top*` (and `linear_mAP` of multi-label images), zero-shot
# classification `zero_shot_top*`, retrieval `t2v_*` and `v2t_*`, the MLP probe's (AudioSet)
# `mlp_mAP`, `mlp_AUC` and `mlp_d_prime`.
_METRIC = re.compile(r'^((linear|zero_shot)_top\d+|linear_mAP|mlp_(mAP|AUC|d_prime)|'
                     r'[tv]2[vt]_.+)$')


def canonical_benchmark(name):
  """'ESC-50' → 'esc50', 'MSR-VTT' → 'msrvtt', 'HMDB_51' → 'hmdb51'; a registry name's
  underscore between words stays ('synthetic_images')."""
  return re.sub(r'_(?=\d)', '', re.sub(r'[\s\-]+', '', name.lower()))


def paper_number(backbone, benchmark, metric):
  """The paper's number, or None where it reports none."""
  return PAPER_NUMBERS.get((backbone, canonical_benchmark(benchmark), metric))


def _plain(value):
  """`value` with numpy scalars and arrays turned into JSON types."""
  if isinstance(value, dict):
    return {str(k): _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple, np.ndarray)):
    return [_plain(v) for v in value]
  if isinstance(value, np.generic):
    return value.item()
  return value


def make_record(benchmark, step, backbone, protocol, per_split):
  """The JSON-ready record of one benchmark's evaluation.

  Args:
    benchmark: e.g. 'ucf101', 'hmdb51', 'esc50', 'kinetics600', 'msrvtt', 'youcook2'.
    step: checkpoint step.
    backbone: video (or audio) backbone as named in configs: 's3d_g', 'tsm_resnet50', ...
    protocol: how it was measured, e.g. {'protocols': ['linear'], 'train_passes': 10,
      'test_clips': 10, 'train_crop': 'random 200', 'test_crop': 'central 200',
      'videos_listed': {split: {role: n}}, 'videos_read': ..., 'videos_skipped': ...};
      'splits' is added when absent.
    per_split: {split name: result dict of a protocol}, in split order.

  Returns:
    {'benchmark', 'step', 'backbone', 'protocol', 'splits': per_split, 'metrics': the mean
    over splits of each metric key (linear_top*, zero_shot_top*, t2v_*, v2t_*) present in
    every split}.
  """
  if not per_split:
    raise ValueError('no split results')
  names = [k for k in next(iter(per_split.values())) if _METRIC.match(k)]
  metrics = {k: float(np.mean([r[k] for r in per_split.values()]))
             for k in names if all(k in r for r in per_split.values())}
  return _plain({
      'benchmark': canonical_benchmark(benchmark),
      'step': int(step),
      'backbone': backbone,
      'protocol': {'splits': list(per_split), **protocol},
      'splits': dict(per_split),
      'metrics': metrics,
  })


def scalars(record):
  """(name, value) pairs for TensorBoard: '{benchmark}/{metric}' (mean) and per split."""
  prefix = record['benchmark']
  for metric, value in record['metrics'].items():
    yield f'{prefix}/{metric}', value
  if len(record['splits']) > 1:
    for split, result in record['splits'].items():
      for metric in record['metrics']:
        yield f'{prefix}/{split}/{metric}', result[metric]


def _number(value):
  return f'{value:.2f}' if isinstance(value, float) else str(value)


def _paper(value):
  return NO_NUMBER if value is None else str(value)  # As printed in the paper: 89.6, 38.


def _setting(value):
  return value if isinstance(value, str) else json.dumps(value)


# Protocol entries the report summarises (the record keeps them whole): per split and role the
# videos listed, read and skipped, and the conversion's counts.
_COUNTS = ('videos_listed', 'videos_read', 'videos_skipped', 'prepared')
_PASS = re.compile(r'^(.+)_pass\d+$')


def role_counts(protocol, split):
  """{role: [(listed, read, skipped) per pass]} of `split`: a linear probe's training passes
  (`train_pass0` ... `train_pass9`) are one role, `train`; other roles have one pass."""
  counts = {}
  for role, listed in protocol.get('videos_listed', {}).get(split, {}).items():
    match = _PASS.match(role)
    read = protocol.get('videos_read', {}).get(split, {}).get(role, listed)
    skipped = protocol.get('videos_skipped', {}).get(split, {}).get(role, listed - read)
    counts.setdefault(match.group(1) if match else role, []).append((listed, read, skipped))
  return counts


def _in_all(passes):
  """'(listed, read, skipped)' in all passes, and how many passes: '' or ' (10 passes)'."""
  totals = tuple(sum(column) for column in zip(*passes))
  return totals, (f' ({len(passes)} passes)' if len(passes) > 1 else '')


def skipped_warning(protocol):
  """'WARNING: ...' naming each split and role whose metrics miss videos its split lists
  (`protocol['videos_skipped']`; a probe's training passes together), or None when none
  were skipped."""
  missing = []
  for split in protocol.get('videos_listed', {}):
    for role, passes in role_counts(protocol, split).items():
      (listed, _, skipped), how_many = _in_all(passes)
      if skipped:
        missing.append(f'{split} {role}{how_many}: {skipped} of {listed}')
  if not missing:
    return None
  return (f'WARNING: metrics computed without videos the benchmark lists (skipped, of listed: '
          f'{"; ".join(missing)}); see the counts below the metrics.')


def count_summary(protocol):
  """Lines of counts: per split, each role's videos listed / read / skipped (a probe's
  training passes once when they are all alike, else their totals), then the conversion's."""
  lines = []
  for split in protocol.get('videos_listed', {}):
    roles = []
    for role, passes in role_counts(protocol, split).items():
      if len(set(passes)) == 1:
        each = f' (each of {len(passes)} passes)' if len(passes) > 1 else ''
        roles.append(f'{role} {" / ".join(map(str, passes[0]))}{each}')
      else:
        totals, how_many = _in_all(passes)
        roles.append(f'{role} {" / ".join(map(str, totals))}{how_many[:-1]} in all)')
    lines.append(f'- videos listed / read / skipped, split {split}: {", ".join(roles)}')
  for split, prepared in protocol.get('prepared', {}).items():
    sides = ', '.join(f'{key[:-7]} {prepared.get(key[:-7] + "_clips", "?")} of {listed}'
                      for key, listed in prepared.items() if key.endswith('_listed'))
    lines.append(f'- videos converted, split {split}: {sides or "none"}')
  return lines


def render_markdown(record):
  """A short markdown report: the metrics beside the paper's when the record's protocol is the
  published one (`protocol['published']`), a line of counts per split, then how it was
  measured (the record's JSON has the counts in full). Its first line is a warning when
  videos were skipped (`skipped_warning`)."""
  bench, backbone = record['benchmark'], record['backbone']
  protocol = record['protocol']
  published = protocol.get('published', False)
  paper = lambda metric: paper_number(backbone, bench, metric) if published else None
  warning = skipped_warning(protocol)
  lines = [f'**{warning}**', ''] if warning else []
  lines += [f'# {bench} — {backbone}, checkpoint step {record["step"]}', '',
            '| metric | ours | paper |', '| --- | --- | --- |']
  for metric, value in record['metrics'].items():
    lines.append(f'| {metric} | {_number(value)} | {_paper(paper(metric))} |')
  splits = record['splits']
  if len(splits) > 1:
    lines += ['', '| metric | ' + ' | '.join(splits) + ' | mean |',
              '| --- |' + ' --- |' * (len(splits) + 1)]
    for metric, value in record['metrics'].items():
      row = [_number(r[metric]) for r in splits.values()] + [_number(value)]
      lines.append(f'| {metric} | ' + ' | '.join(row) + ' |')
  counts = count_summary(protocol)
  if counts:
    lines += [''] + counts
  reported = any(paper_number(backbone, bench, m) is not None for m in record['metrics'])
  if not reported and bench in NO_SOURCE:
    lines += ['', f'No source at hand states the paper\'s figure for {backbone} on {bench} '
              '(nor its image protocol): none is shown.']
  elif not reported:
    lines += ['', f'The paper reports no number for {backbone} on {bench}.']
  elif not published:
    differs = protocol.get('differs_from_published', [])
    lines += ['', f'Not the published protocol (differs in: {", ".join(differs) or "?"}): '
              "the paper's numbers are not comparable and are not shown."]
  else:
    lines += ['', 'Paper: MMV FAC (Alayrac et al., 2020), measured by the same (published) '
              'protocol; linear top-1 of UCF101/HMDB51 split 1 and the mean of ESC-50\'s 5 '
              'folds, retrieval is text→video (t2v).']
  lines += ['', '## How it was measured', '', f'- benchmark: {bench}',
            f'- backbone: {backbone}', f'- checkpoint step: {record["step"]}']
  lines += [f'- {k}: {_setting(v)}' for k, v in protocol.items() if k not in _COUNTS]
  chosen_c = {split: r['linear_C'] for split, r in splits.items() if 'linear_C' in r}
  if chosen_c:
    lines.append(f'- C used per split: {json.dumps(chosen_c)}')
  return '\n'.join(lines) + '\n'


def write(record, directory, name=None):
  """Writes `{name}.json` and `{name}.md` (name: '{benchmark}_{step}'); returns both paths."""
  name = name or f'{record["benchmark"]}_{record["step"]}'
  os.makedirs(directory, exist_ok=True)
  json_path, md_path = (os.path.join(directory, f'{name}.{ext}') for ext in ('json', 'md'))
  with open(json_path, 'w') as f:
    json.dump(record, f, indent=1)
  with open(md_path, 'w') as f:
    f.write(render_markdown(record))
  return json_path, md_path
