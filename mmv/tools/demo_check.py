"""Whether `make demo`'s evaluation is what a working install gets, or a broken one.

    python -m mmv.tools.demo_check runs/demo/eval.json

The demo's figures are not the same bit for bit on every machine: XLA:CPU's arithmetic depends
on the instruction set it compiles for and on the number of cores the process may use, and 600
steps of training turn those rounding differences into points of accuracy. `EXPECTED` holds, per
metric, the range measured over settings that emulate other machines (README, The two commands), and
`LEARNED` what a model that learned reaches at least, in multiples of chance (an untrained model
stays below it). Each metric gets one line:

    OK: linear_top1 97.27 % (chance 6.25 %; expected 93-100 %)
    UNUSUAL: ... outside the expected range, yet at least 5x chance: a run that learned less (or
      more) than measured; worth a look, not an error
    BROKEN: ... under 5x chance: the model did not learn (a broken install or data)

The exit status is 1 when a metric is BROKEN (or missing from the record), else 0.
"""

import json
import sys

# Percent, per metric of the synthetic benchmark's record: (low, high) spans what was measured
# (2026-12-03, 2-core Sapphire Rapids VM, 600 steps) with XLA's ISA at AVX-512 (default), AVX2
# and SSE4.2, on 1 core and 2, and two earlier 2-core VMs' runs: R@1 28.9-32.4, R@5 92.6-94.9,
# linear 94.9-98.8, zero-shot 89.5-96.5; widened by about 2 points on each side.
EXPECTED = {
    't2v_R@1': (26.0, 35.0),
    't2v_R@5': (90.0, 97.0),
    'linear_top1': (93.0, 100.0),
    'zero_shot_top1': (87.0, 98.5),
}
# At least this many times chance when the model learned; an untrained model (step 1) measured
# R@1 1x, R@5 1.4x, linear 5.6x (34.8 %: random features separate the classes somewhat) and
# zero-shot 1.75x chance.
# At least this many times chance when the model learned.
LEARNED = {
    't2v_R@1': 20.0,
    't2v_R@5': 20.0,
    'linear_top1': 8.0,
    'zero_shot_top1': 5.0,
}


def chance(metric, record):
  """A random ranking's expected value of `metric`, in percent: 100 k / classes for top-k
  classification, 100 k / gallery videos for R@k retrieval."""
  result = record['splits'][record['protocol']['splits'][0]]
  for task in ('linear', 'zero_shot'):
    if metric.startswith(f'{task}_top'):
      return 100.0 * int(metric[len(task) + 4:]) / result[f'{task}_num_classes']
  if metric.startswith(('t2v_R@', 'v2t_R@')):
    gallery = 'videos' if metric.startswith('t2v') else 'queries'  # Captions: one per video.
    return 100.0 * int(metric.split('@')[1]) / result[f'retrieval_num_{gallery}']
  raise ValueError(f'no chance level for {metric!r}')


def _range(bounds):
  return '-'.join(f'{b:g}' for b in bounds)


def verdicts(record, expected=None, learned=None):
  """[(verdict, line)] per metric of `expected`: verdict 'OK', 'UNUSUAL' or 'BROKEN'."""
  expected, learned = expected or EXPECTED, learned or LEARNED
  out = []
  for metric, (low, high) in expected.items():
    value = record['metrics'].get(metric)
    if value is None:
      out.append(('BROKEN', f'BROKEN: {metric} is not in the record'))
      continue
    base = chance(metric, record)
    floor = learned[metric] * base
    said = f'{metric} {value:.2f} % (chance {base:.2f} %; expected {_range((low, high))} %)'
    if value < floor:
      out.append(('BROKEN', f'BROKEN: {said}: under {learned[metric]:g}x chance '
                            f'({floor:.1f} %), the model did not learn'))
    elif low <= value <= high:
      out.append(('OK', f'OK: {said}'))
    else:
      out.append(('UNUSUAL', f'UNUSUAL: {said}: outside the measured range, though at least '
                             f'{learned[metric]:g}x chance ({floor:.1f} %)'))
  return out


def main(argv):
  if len(argv) != 2:
    print(f'usage: {argv[0]} EVAL_JSON (the list `mmv.evaluate --output` writes)',
          file=sys.stderr)
    return 2
  with open(argv[1]) as f:
    records = json.load(f)
  record = records[-1] if isinstance(records, list) else records
  results = verdicts(record)
  for _, line in results:
    print(line)
  kinds = {kind for kind, _ in results}
  summary = ('BROKEN' if 'BROKEN' in kinds else 'UNUSUAL' if 'UNUSUAL' in kinds else 'OK')
  print(f'demo check: {summary} (checkpoint step {record["step"]}; what the figures mean: '
        'README, The two commands)')
  return 1 if summary == 'BROKEN' else 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
