"""`make demo`'s verdict: OK inside the measured range, UNUSUAL outside it but above the learned
floor, BROKEN (exit status 1) under it."""

import json
import os

from mmv.evaluators import report
from mmv.tools import demo_check

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES, VIDEOS = 16, 256  # The synthetic benchmark's test split.


def _record(**metrics):
  result = {'retrieval_num_videos': VIDEOS, 'retrieval_num_queries': VIDEOS,
            'linear_num_classes': CLASSES, 'zero_shot_num_classes': CLASSES, **metrics}
  return report.make_record('synthetic', 600, 'tiny_video', {}, {'test': result})


def test_chance_is_one_class_in_sixteen_and_k_videos_in_the_gallery():
  record = _record(linear_top1=50.0)
  assert demo_check.chance('linear_top1', record) == 100 / 16
  assert demo_check.chance('zero_shot_top1', record) == 100 / 16
  assert demo_check.chance('t2v_R@1', record) == 100 / 256
  assert demo_check.chance('t2v_R@5', record) == 500 / 256
  assert demo_check.chance('linear_top5', record) == 500 / 16


def test_verdicts_ok_unusual_broken():
  expected = {'linear_top1': (90.0, 99.0)}
  learned = {'linear_top1': 8.0}  # 8 x 6.25 = 50 %.
  verdict = lambda value: demo_check.verdicts(_record(linear_top1=value), expected, learned)
  (kind, line), = verdict(97.27)
  assert kind == 'OK' and line == 'OK: linear_top1 97.27 % (chance 6.25 %; expected 90-99 %)'
  assert verdict(90.0)[0][0] == verdict(99.0)[0][0] == 'OK'  # The bounds are inside.
  assert verdict(89.9)[0][0] == verdict(99.5)[0][0] == 'UNUSUAL'
  assert verdict(50.0)[0][0] == 'UNUSUAL'
  (kind, line), = verdict(49.9)
  assert kind == 'BROKEN' and 'under 8x chance (50.0 %)' in line
  (kind, line), = demo_check.verdicts(_record(**{'t2v_R@1': 30.0}), expected, learned)
  assert kind == 'BROKEN' and 'linear_top1 is not in the record' in line


def test_the_bounds_call_no_working_run_broken():
  record = _record()
  for metric, (low, high) in demo_check.EXPECTED.items():
    assert 0 < demo_check.LEARNED[metric] * demo_check.chance(metric, record) < low < high <= 100


def test_main_exit_status_and_the_makefile_runs_it(tmp_path, capsys):
  good = {m: (low + high) / 2 for m, (low, high) in demo_check.EXPECTED.items()}
  path = tmp_path / 'eval.json'
  path.write_text(json.dumps([_record(**good)]))
  assert demo_check.main(['demo_check', str(path)]) == 0
  out = capsys.readouterr().out.splitlines()
  assert len(out) == len(demo_check.EXPECTED) + 1 and out[-1].startswith('demo check: OK')
  path.write_text(json.dumps([_record(**{**good, 'linear_top1': 100 / CLASSES})]))
  assert demo_check.main(['demo_check', str(path)]) == 1
  assert capsys.readouterr().out.splitlines()[-1].startswith('demo check: BROKEN')
  makefile = open(os.path.join(ROOT, 'Makefile')).read()
  demo = makefile.split('\ndemo:', 1)[1].split('\n\n', 1)[0]
  assert 'mmv.tools.demo_check runs/demo/eval.json' in demo
