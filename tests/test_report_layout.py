"""The evaluation's markdown report: the metrics first, the counts in a line per split, and the
record's JSON with every pass's counts."""

import json

from mmv.evaluators import report

PASSES = 10


def _record(train_read=(1024,) * PASSES, test_read=256):
  """A synthetic-benchmark record as the evaluation makes it: per split and role the videos
  listed, read and skipped, and the conversion's counts (`prepared`)."""
  listed = {**{f'train_pass{p}': 1024 for p in range(PASSES)},
            'linear_test': 256, 'retrieval_test': 256}
  read = {**{f'train_pass{p}': n for p, n in enumerate(train_read)},
          'linear_test': test_read, 'retrieval_test': 256}
  protocol = {'test_clips': 10, 'published': False,
              'videos_listed': {'test': listed}, 'videos_read': {'test': read},
              'videos_skipped': {'test': {k: listed[k] - read[k] for k in listed}},
              'prepared': {'test': {'benchmark': 'synthetic', 'split': 'test',
                                    'source': 'records', 'data_dir': 'data/synthetic',
                                    'num_classes': 16, 'train_listed': 1024,
                                    'train_clips': 1024, 'train_skipped': 0,
                                    'test_listed': 256, 'test_clips': 256,
                                    'test_skipped': 0}}}
  per_split = {'test': {'linear_top1': 97.5, 'zero_shot_top1': 95.0, 't2v_R@1': 30.0,
                        'linear_C': 0.1}}
  return report.make_record('synthetic', 600, 'tiny_video', protocol, per_split)


def _line(lines, start):
  return next(i for i, line in enumerate(lines) if line.startswith(start))


def test_metrics_come_first_then_one_line_of_counts_and_no_json_dicts():
  lines = report.render_markdown(_record()).splitlines()
  assert lines[0] == '# synthetic — tiny_video, checkpoint step 600'
  table = _line(lines, '| metric | ours | paper |')
  counts = _line(lines, '- videos listed / read / skipped')
  settings = _line(lines, '- test_clips: 10')
  assert table < _line(lines, '| linear_top1 | 97.50 |') < counts < settings
  assert table < 5 and counts < 12  # The first screen.
  # The ten passes alike: said once.
  assert lines[counts] == ('- videos listed / read / skipped, split test: '
                           'train 1024 / 1024 / 0 (each of 10 passes), '
                           'linear_test 256 / 256 / 0, retrieval_test 256 / 256 / 0')
  assert '- videos converted, split test: train 1024 of 1024, test 256 of 256' in lines
  assert not any('train_pass' in line or '{' in line for line in lines[:settings])
  assert all(len(line) < 200 for line in lines)
  assert not any('WARNING' in line for line in lines)


def test_skipped_videos_give_a_warning_first_and_totals_over_the_passes():
  read = [1024] * PASSES
  read[3] = 1021  # One pass lost 3 videos (an unreadable shard's tail).
  lines = report.render_markdown(_record(train_read=read, test_read=250)).splitlines()
  assert lines[0].startswith('**WARNING:') and 'test linear_test: 6 of 256' in lines[0]
  assert 'test train (10 passes): 3 of 10240' in lines[0]
  counts = lines[_line(lines, '- videos listed / read / skipped')]
  assert 'train 10240 / 10237 / 3 (10 passes in all)' in counts
  assert 'linear_test 256 / 250 / 6' in counts
  assert _line(lines, '| metric | ours | paper |') < _line(lines, '- videos listed')


def test_the_json_record_keeps_every_pass(tmp_path):
  record = _record()
  json_path, md_path = report.write(record, str(tmp_path))
  stored = json.load(open(json_path))
  assert stored == record
  assert stored['protocol']['videos_read']['test']['train_pass7'] == 1024
  assert stored['protocol']['prepared']['test']['num_classes'] == 16
  assert open(md_path).read() == report.render_markdown(record)
