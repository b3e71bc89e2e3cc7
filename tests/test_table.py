"""`python -m mmv.table`: the MMV paper's results table with our records' rows beside it.

The paper's figures here are typed from the MMV paper (arXiv 2006.16228) as the project's
design notes record them (linear UCF101/HMDB51 of the FAC models, ESC-50 and zero-shot
retrieval of TSM-50x2) and from its comparison table (MIL-NCE and "VA only" rows), not taken
from mmv's code.
"""

import csv
import io
import json

import pytest

from configs import tiny
from mmv import benchmarks
from mmv import evaluate_protocol
from mmv import table
from mmv.evaluators import report

# (method, backbone as printed) → {column title: figure}.
PAPER = {
    ('MMV FAC', 'S3D-G (9.1M)'): {'UCF101 Linear': '89.6', 'HMDB51 Linear': '62.6'},
    ('MMV FAC', 'TSM-50 (23.5M)'): {'UCF101 Linear': '91.5', 'HMDB51 Linear': '66.7'},
    ('MMV FAC', 'TSM-50x2 (93.9M)'): {
        'UCF101 Linear': '91.8', 'HMDB51 Linear': '67.1', 'ESC-50 Linear': '88.9',
        'MSRVTT R@1': '9.3', 'MSRVTT R@5': '23.0', 'MSRVTT R@10': '31.1', 'MSRVTT MedR': '38',
        'YouCook2 R@10': '45.4', 'YouCook2 MedR': '13'},
    ('MIL-NCE', 'S3D-G (9.1M)'): {'UCF101 Linear': '82.7', 'UCF101 FT': '91.3',
                                  'HMDB51 Linear': '53.1', 'HMDB51 FT': '61.0',
                                  'ESC-50 Linear': '/', 'AS MLP': '/', 'K600 Linear': '/'},
    ('MMV VA only', 'R(2+1)D-18 (33.3M)'): {
        'UCF101 Linear': '83.9', 'UCF101 FT': '91.5', 'HMDB51 Linear': '60.0',
        'HMDB51 FT': '70.1', 'ESC-50 Linear': '85.6', 'AS MLP': '29.7', 'K600 Linear': '55.5'},
}
# Top-1 chance = 100 / classes: UCF101 101, HMDB51 51, ESC-50 50, Kinetics-600 600 classes;
# MSRVTT 1k-A: 1,000 test videos (R@1 0.1 %, median rank 500.5).
CHANCE = {'UCF101 Linear': '0.99', 'HMDB51 Linear': '1.96', 'ESC-50 Linear': '2.00',
          'K600 Linear': '0.17', 'MSRVTT R@1': '0.10', 'MSRVTT MedR': '500.50'}


def parse_markdown(text):
  """[{title: cell}] of the markdown table's rows (the lines starting with '|')."""
  lines = [l for l in text.splitlines() if l.startswith('|')]
  split = lambda line: [c.strip() for c in line.strip().strip('|').split('|')]
  header = split(lines[0])
  assert set(lines[1].replace('|', '').split()) == {'---'}
  return [dict(zip(header, split(l), strict=True)) for l in lines[2:]]


def _record(bench_name, metrics, workdir, *, config=None, step=600, num_classes=16, videos=64):
  """A record as mmv.evaluate writes it: its protocol block from `config` (tiny.py by
  default), the run's identity, and `metrics` as every split's result."""
  config = config or tiny.get_config()
  bench = benchmarks.get(bench_name)
  splits = list(evaluate_protocol.protocol(config, bench).splits)
  settings = evaluate_protocol.protocol_settings(config, bench, splits)
  settings['prepared'] = {s: {'num_classes': num_classes} for s in splits}
  settings['videos_read'] = {s: {'retrieval_test': videos, 'linear_test': videos}
                             for s in splits}
  return report.make_record(bench_name, step, config.model.video_backbone, settings,
                            {s: dict(metrics) for s in splits},
                            run=evaluate_protocol.run_identity(config, workdir))


def _write(tmp_path, name, content):
  path = tmp_path / name
  path.write_text(json.dumps(content))
  return str(path)


def _demo_record(tmp_path):
  return _record('synthetic', {'linear_top1': 42.96875, 'linear_top5': 91.0,
                               't2v_R@1': 1.953125, 't2v_R@5': 13.28125, 't2v_R@10': 21.484375,
                               't2v_MedR': 22.0, 'zero_shot_top1': 7.421875},
                 str(tmp_path / 'runs' / 'demo'), videos=256)


def test_markdown_has_the_papers_rows_chance_and_the_demo_row(tmp_path, capsys):
  # As the demo writes it: --output's list of records.
  path = _write(tmp_path, 'eval.json', [_demo_record(tmp_path)])
  assert table.main(['--records', path]) == 0
  rows = parse_markdown(capsys.readouterr().out)
  by_name = {(r['Method'], r['f_v (#params)'], r['Train data']): r for r in rows}
  for (method, backbone), figures in PAPER.items():
    data = 'HT' if method == 'MIL-NCE' else 'AS' if 'VA' in method else 'AS+HT'
    row = by_name[(method, backbone, data)]
    for title, figure in figures.items():
      assert row[title] == figure, (method, backbone, title)
  fac_s3d = by_name[('MMV FAC', 'S3D-G (9.1M)', 'AS+HT')]
  assert fac_s3d['MSRVTT R@1'] == ''  # Not reported for S3D-G.
  chance = next(r for r in rows if r['Method'] == 'chance')
  for title, level in CHANCE.items():
    assert chance[title] == level, title
  assert chance['synthetic Linear'] == '6.25'  # 16 classes.
  assert chance['synthetic R@10'] == '3.91'  # 10 of 256 videos.
  ours = [r for r in rows if r['Method'].startswith('ours')]
  assert len(ours) == 1
  demo = ours[0]
  assert demo['Method'] == 'ours mmv: demo (step 600)'
  assert (demo['f_v (#params)'], demo['Mod.']) == ('tiny_video', 'VAT')
  # The synthetic benchmark has no published protocol: every cell carries the note.
  assert demo['synthetic Linear'] == '42.97 (a)' and demo['synthetic R@1'] == '1.95 (a)'
  assert demo['synthetic MedR'] == '22.00 (a)' and demo['synthetic zero-shot'] == '7.42 (a)'
  assert demo['UCF101 Linear'] == '' and 'synthetic Linear top5' not in demo


def test_another_protocol_is_marked_and_the_published_one_is_not(tmp_path, capsys):
  workdir = str(tmp_path / 'run')
  published = _record('ucf101', {'linear_top1': 61.25}, workdir, num_classes=101)
  assert published['protocol']['published']
  other = tiny.get_config()
  other.eval.esc50.test_clips = 2
  esc = _record('esc50', {'linear_top1': 55.5}, workdir, config=other, num_classes=50)
  paths = [_write(tmp_path, 'ucf.json', published), _write(tmp_path, 'esc.json', esc)]
  assert table.main(['--records', *paths]) == 0
  out = capsys.readouterr().out
  ours = [r for r in parse_markdown(out) if r['Method'].startswith('ours')]
  assert len(ours) == 1  # One run: one row.
  assert ours[0]['UCF101 Linear'] == '61.25'  # The published protocol: no note.
  assert ours[0]['ESC-50 Linear'] == '55.50 (a)'
  assert '(a) esc50: differs from the published protocol in test_clips' in out

  assert table.main(['--records', *paths, '--csv']) == 0
  lines = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
  (row,) = [l for l in lines if l['source'] == 'ours']
  assert float(row['UCF101 Linear']) == 61.25 and float(row['ESC-50 Linear']) == 55.5
  assert row['notes'] == 'ESC-50 Linear: esc50: differs from the published protocol in test_clips'
  paper = {(l['Method'], l['f_v (#params)'], l['Train data']): l for l in lines
           if l['source'] == 'paper'}
  assert float(paper[('MMV FAC', 'TSM-50x2 (93.9M)', 'AS+HT')]['ESC-50 Linear']) == 88.9
  assert paper[('MMV FAC', 'S3D-G (9.1M)', 'AS+HT')]['HMDB51 Linear'] == '62.6'
  (chance,) = [l for l in lines if l['source'] == 'chance']
  assert float(chance['UCF101 Linear']) == pytest.approx(100 / 101, abs=0.005)


def test_csv_of_the_demo_parses_back(tmp_path, capsys):
  path = _write(tmp_path, 'eval.json', _demo_record(tmp_path))
  assert table.main(['--csv', '--records', path]) == 0
  lines = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
  assert [l['source'] for l in lines].count('paper') == 18
  (demo,) = [l for l in lines if l['source'] == 'ours']
  assert float(demo['synthetic Linear']) == 42.97 and float(demo['synthetic R@10']) == 21.48
  assert demo['notes'] == ('synthetic Linear, synthetic zero-shot, synthetic R@1, synthetic R@5, '
                           'synthetic R@10, synthetic MedR: synthetic: no published protocol; '
                           "measured by the demo's CPU-sized protocol (not published)")


def test_finetuning_and_audioset_records_fill_their_columns(tmp_path, capsys):
  workdir = str(tmp_path / 'run')
  ft = _record('ucf101', {'linear_top1': 60.0}, workdir, num_classes=101)
  ft['metrics'] = {'finetune_top1': 88.25, 'finetune_top5': 97.0}  # As mmv.finetune names.
  audioset = dict(_record('esc50', {'linear_top1': 1.0}, workdir), benchmark='audioset',
                  metrics={'mlp_mAP': 21.5, 'mlp_AUC': 90.0, 'mlp_d_prime': 1.8})
  paths = [_write(tmp_path, 'ft.json', ft), _write(tmp_path, 'as.json', audioset)]
  assert table.main(['--records', *paths]) == 0
  (ours,) = [r for r in parse_markdown(capsys.readouterr().out) if r['Method'].startswith('ours')]
  assert ours['UCF101 FT'] == '88.25' and ours['UCF101 Linear'] == ''
  assert ours['AS MLP'] == '21.50'


def test_records_it_cannot_show_are_clear_errors(tmp_path, capsys):
  not_a_record = _write(tmp_path, 'config.json', {'model': {}})
  assert table.main(['--records', not_a_record]) == 1
  assert 'not an evaluation record (no benchmark, step' in capsys.readouterr().err
  unknown = _record('synthetic', {'linear_top1': 1.0}, str(tmp_path))
  unknown['metrics'] = {'accuracy': 50.0}
  assert table.main(['--records', _write(tmp_path, 'u.json', unknown)]) == 1
  err = capsys.readouterr().err
  assert "record of benchmark 'synthetic' has no metric the table shows" in err
  assert "['accuracy']" in err
  twice = [_write(tmp_path, f'{s}.json', _record('ucf101', {'linear_top1': 1.0}, 'w', step=s))
           for s in (100, 200)]
  assert table.main(['--records', *twice]) == 1
  assert 'steps 100 and 200' in capsys.readouterr().err
  assert table.main(['--records', str(tmp_path / 'missing.json')]) == 1
  assert 'cannot be read as JSON' in capsys.readouterr().err


def test_the_paper_table_alone(capsys):
  assert table.main(['--markdown']) == 0
  rows = parse_markdown(capsys.readouterr().out)
  assert [r['Method'] for r in rows].count('MMV FAC') == 3
  assert not [r for r in rows if r['Method'].startswith('ours')]


def test_an_evaluation_report_shows_mmv_facs_figure_only_beside_mmv_fac(tmp_path):
  """The per-record report puts the paper's MMV FAC figure (S3D-G UCF101 linear 89.6) beside a
  three-tower MMV run only, not beside a "VA only" run of the same backbone."""
  for towers, shown in ((('video', 'audio', 'text'), True), (('video', 'audio'), False)):
    config = tiny.get_config()
    config.model.video_backbone = 's3d_g'
    config.model.towers = towers
    record = _record('ucf101', {'linear_top1': 61.25}, str(tmp_path), config=config,
                     num_classes=101)
    md = report.render_markdown(record)
    assert ('| linear_top1 | 61.25 | 89.6 |' in md) == shown, towers
    assert ('none is shown' in md) != shown
