"""The data/ recipes on a few rows of each dataset's official metadata, in its published format
(tests/fixtures/recipes/README.md), and one recipe's output through the converter.

The scripts live outside the package: they are imported by path, and one is run as the
documented command. Media files are empty stand-ins (the recipes and the benchmark readers
only look files up), but for the end-to-end test, whose videos are real (tests/media_files.py).
"""

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

from mmv.ingest import clip_lists
from mmv.ingest import convert
from tests import media_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, 'tests', 'fixtures', 'recipes')

# AudioSet's class_labels_indices.csv, rows 0-7 as published: ids are these positions, which
# are not the sorted order of the names.
AUDIOSET_CLASSES = ['Speech', 'Male speech, man speaking', 'Female speech, woman speaking',
                    'Child speech, kid speaking', 'Conversation', 'Narration, monologue',
                    'Babbling', 'Speech synthesizer']


def _script(relative):
  """The data/ script at `relative`, imported by path."""
  name = 'recipe_' + relative.replace('/', '_').replace('.py', '')
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, 'data', relative))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _main(relative, argv, capsys):
  """(exit status, stdout lines, stderr) of a script's main(argv)."""
  status = 0
  try:
    _script(relative).main([str(a) for a in argv])
  except SystemExit as e:
    status = e.code
  out = capsys.readouterr()
  return status, out.out.splitlines(), out.err


def _touch(root, *relatives):
  for relative in relatives:
    path = os.path.join(root, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, 'wb').close()


def _rows(path):
  with open(path, newline='') as f:
    return [tuple(row) for row in csv.reader(f)]


def _lines(path):
  with open(path) as f:
    return f.read().splitlines()


def _tree(tmp_path, dataset):
  """A copy of the dataset's fixture files, to add media to."""
  root = str(tmp_path / dataset)
  shutil.copytree(os.path.join(FIXTURES, dataset), root)
  return root


# AudioSet ----------------------------------------------------------------------------------


def _audioset(tmp_path, videos):
  fixtures = os.path.join(FIXTURES, 'audioset')
  return [f'--segments={fixtures}/balanced_train_segments.csv',
          f'--class_labels={fixtures}/class_labels_indices.csv', f'--video_root={videos}',
          f'--output_dir={tmp_path / "out"}', '--name=balanced_train']


def test_audioset_rows_labels_in_ontology_order_and_missing_videos(tmp_path, capsys):
  videos = str(tmp_path / 'videos')
  _touch(videos, '--PJHxphWEs.mp4',  # The whole video: cut to the segment.
         'part2/--ZhevVpy1s_000050_000060.wav',  # Already cut: the whole file.
         '--aaILOrkII_000200_000210.mkv')
  status, out, _ = _main('audioset/recipe.py', _audioset(tmp_path, videos), capsys)
  assert status == 0
  assert _rows(tmp_path / 'out' / 'balanced_train.csv') == [
      ('video_path', 'start', 'end', 'label'),
      ('--PJHxphWEs.mp4', '30', '40', 'Speech;Male speech, man speaking'),
      ('part2/--ZhevVpy1s_000050_000060.wav', '', '', 'Narration, monologue'),
      ('--aaILOrkII_000200_000210.mkv', '', '', 'Female speech, woman speaking')]
  assert _lines(tmp_path / 'out' / 'labels.txt') == AUDIOSET_CLASSES
  assert out[0].startswith('6 segments listed, 3 written')
  assert out[1].startswith('8 classes') and '527' in out[1]
  assert out[2] == ('skipped 3, video not on disk: --aE2O5G5WE 0-10, --aO5cdqSAg 30-40, '
                    '--cB2ZVjpnA 30-40')
  # The converter reads the CSV as its rows say.
  specs, rejected = clip_lists.read_csv(str(tmp_path / 'out' / 'balanced_train.csv'), videos)
  assert not rejected
  assert [(s.start, s.end, s.labels) for s in specs] == [
      (30.0, 40.0, ('Speech', 'Male speech, man speaking')),
      (0.0, None, ('Narration, monologue',)), (0.0, None, ('Female speech, woman speaking',))]


def test_audioset_bad_input_is_one_line(tmp_path, capsys):
  videos = str(tmp_path / 'videos')
  _touch(videos, '--PJHxphWEs.mp4')
  labels = tmp_path / 'class_labels_indices.csv'
  with open(os.path.join(FIXTURES, 'audioset', 'class_labels_indices.csv')) as f:
    labels.write_text(''.join(line for line in f if '/m/02qldy' not in line
                              and not line.startswith(('6,', '7,'))))
  argv = _audioset(tmp_path, videos) + [f'--class_labels={labels}']
  status, _, err = _main('audioset/recipe.py', argv, capsys)
  assert status.startswith('audioset recipe: ') and '\n' not in status
  assert 'balanced_train_segments.csv line 5' in status and "['/m/02qldy']" in status
  assert not os.path.exists(tmp_path / 'out')
  labels.write_text('index,mid,name\n0,/m/09x0r,Speech\n')
  status, _, _ = _main('audioset/recipe.py', argv, capsys)
  assert 'no column' in status and 'display_name' in status


def test_audioset_recipe_through_the_converter(tmp_path, capsys):
  """Recipe CSV → converter (same output directory) → records whose label ids are AudioSet's
  class indices, not the sorted names' positions."""
  videos = tmp_path / 'videos'
  videos.mkdir()
  media_files.write_video(str(videos / '--PJHxphWEs_000030_000040.mp4'), video_codec='mpeg4',
                          audio_codec='aac')
  media_files.write_wav(str(videos / '--ZhevVpy1s_000050_000060.wav'))
  status, _, _ = _main('audioset/recipe.py', _audioset(tmp_path, videos), capsys)
  assert status == 0
  out = str(tmp_path / 'out')
  specs, _ = clip_lists.read_csv(os.path.join(out, 'balanced_train.csv'), str(videos))
  report = convert.convert(specs, out, name='balanced_train', num_shards=1, fps=10.0,
                           short_side=32, sample_rate=16000, progress=False)
  assert report['written'] == 2 and not report['skipped']
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  records = {}
  for record in tf.data.TFRecordDataset(report['shards']).as_numpy_iterator():
    c = tf.train.SequenceExample.FromString(record).context.feature
    records[c['video/filename'].bytes_list.value[0].decode()] = (
        list(c['clip/label/index'].int64_list.value), c['clip/has_video'].int64_list.value[0])
  assert records == {'--PJHxphWEs_000030_000040.mp4': ([0, 1], 1),
                     '--ZhevVpy1s_000050_000060.wav': ([5], 0)}
  assert _lines(os.path.join(out, 'labels.txt')) == AUDIOSET_CLASSES


# HowTo100M ---------------------------------------------------------------------------------


def test_howto100m_narration_of_the_videos_on_disk(tmp_path, capsys):
  videos = str(tmp_path / 'videos')
  # 2u1vWUPAyw0's first file is a downloader's description: the converter would read it.
  _touch(videos, 'nVbIUDjzWY4.mp4', '-0XJhO6-ycI.webm', '2u1vWUPAyw0.description',
         '2u1vWUPAyw0.mp4')
  fixtures = os.path.join(FIXTURES, 'howto100m')
  output, missing = tmp_path / 'narration.json', tmp_path / 'missing.txt'
  argv = [f'--captions={fixtures}/caption.json', f'--video_root={videos}',
          f'--output={output}', f'--missing_out={missing}']
  status, out, _ = _main('howto100m/recipe.py', argv, capsys)
  assert status == 0
  with open(output) as f:
    narration = json.load(f)
  with open(os.path.join(fixtures, 'caption.json')) as f:
    captions = json.load(f)
  assert narration['nVbIUDjzWY4'] == captions['nVbIUDjzWY4']
  assert narration['-0XJhO6-ycI'] == {'start': [1.2], 'end': [4.8],
                                      'text': ["so we're going to make a simple syrup"]}
  assert sorted(narration) == ['-0XJhO6-ycI', 'nVbIUDjzWY4']
  assert out[0].startswith('4 videos in') and out[0].endswith(f'2 with 5 captions written to '
                                                              f'{output}')
  assert 'not on disk: 1 (Xk5mLRv9iKw)' in out
  assert 'first file not a media file: 1 (2u1vWUPAyw0.description)' in out
  assert 'captions dropped, empty text: 1' in out
  assert _lines(missing) == ['Xk5mLRv9iKw']
  # The converter takes it: one clip per caption, each with its video file.
  specs = clip_lists.read_narration(str(output), videos, min_clip_seconds=4.0, num_captions=2)
  assert len(specs) == 5 and all(s.path for s in specs)
  # With HowTo100M_v1.csv's rows: only the videos it lists.
  argv = argv[:2] + [f'--output={tmp_path / "listed.json"}',
                     f'--video_list={fixtures}/HowTo100M_v1.csv']
  status, out, _ = _main('howto100m/recipe.py', argv, capsys)
  assert status == 0
  assert 'captions of videos the list lacks: 1 (Xk5mLRv9iKw)' in out
  assert 'listed videos without captions: 1 (JtVs6J8N_nE)' in out
  assert not any(line.startswith('not on disk') for line in out)
  # An existing output is kept unless --overwrite.
  status, _, _ = _main('howto100m/recipe.py', argv, capsys)
  assert 'exists; pass --overwrite' in status


def test_howto100m_malformed_entry_is_one_line(tmp_path, capsys):
  (tmp_path / 'videos').mkdir()
  captions = tmp_path / 'caption.json'
  captions.write_text(json.dumps({'nVbIUDjzWY4': {'start': [0.0, 1.0], 'end': [1.0],
                                                  'text': ['a', 'b']}}))
  status, _, _ = _main('howto100m/recipe.py', [
      f'--captions={captions}', f'--video_root={tmp_path / "videos"}',
      f'--output={tmp_path / "n.json"}'], capsys)
  assert status.startswith('howto100m recipe: ') and 'nVbIUDjzWY4' in status
  assert not os.path.exists(tmp_path / 'n.json')


# Kinetics-600 ------------------------------------------------------------------------------


def test_kinetics600_csv_per_split_with_clip_times(tmp_path, capsys):
  root = _tree(tmp_path, 'kinetics600')
  _touch(root, 'train/0347ZoDXyP0_000010_000020.mp4',  # Cut: the whole file.
         'train/04Gt3CBQpPM.mp4',  # Whole: cut to the listed times.
         'train/0f8PBz0cS2A_000004_000014.mp4', 'val/3E7Jib8Yq5M_000000_000010.mp4')
  out = os.path.join(root, 'shards')  # Inside the tree: the reader must ignore its CSVs.
  argv = [f'--data_dir={root}', f'--output_dir={out}']
  status, lines, _ = _main('kinetics600/recipe.py', argv, capsys)
  assert status == 0
  assert _rows(os.path.join(out, 'train.csv')) == [
      ('video_path', 'start', 'end', 'label'),
      ('train/0347ZoDXyP0_000010_000020.mp4', '', '', 'abseiling'),
      ('train/04Gt3CBQpPM.mp4', '0', '10', 'abseiling'),
      ('train/0f8PBz0cS2A_000004_000014.mp4', '', '', 'adjusting glasses')]
  assert _rows(os.path.join(out, 'val.csv')) == [
      ('video_path', 'start', 'end', 'label'),
      ('val/3E7Jib8Yq5M_000000_000010.mp4', '', '', 'abseiling')]
  assert not os.path.exists(os.path.join(out, 'test.csv'))  # The test list has no labels.
  assert _lines(os.path.join(out, 'labels.txt')) == ['abseiling', 'acting in play',
                                                     'adjusting glasses']
  assert lines[0] == '3 classes (published: 600)'
  assert lines[1] == 'split val: train 4 listed, 3 on disk; test 3 listed, 1 on disk'
  assert lines[2].startswith('not on disk (evaluation skips and counts them): 3 (')
  assert f'{out}/train.csv: 3 clips (1 not on disk left out)' in lines
  assert f'{out}/val.csv: 1 clips (2 not on disk left out)' in lines
  # Existing CSVs are kept unless --overwrite; the tree still reads with them in it.
  status, _, _ = _main('kinetics600/recipe.py', argv, capsys)
  assert 'exists; pass --overwrite' in status
  status, again, _ = _main('kinetics600/recipe.py', argv + ['--overwrite'], capsys)
  assert status == 0 and again == lines


# Benchmarks read in their official layout --------------------------------------------------


def _ucf101(root):
  _touch(root, *[f'UCF-101/{c}/v_{c}_g{g}_c01.avi'
                 for c in ('ApplyEyeMakeup', 'ApplyLipstick', 'Archery')
                 for g in ('01', '08', '15', '22') if (c, g) != ('Archery', '22')])
  return [
      '3 classes (published: 101)',
      'split 1: train 9 listed, published 9537, 8 on disk; test 3 listed, published 3783, 3 on '
      'disk',
      'split 2: train 9 listed, published 9586, 8 on disk; test 3 listed, published 3734, 3 on '
      'disk',
      'split 3: train 9 listed, published 9624, 8 on disk; test 3 listed, published 3696, 3 on '
      'disk',
      'not on disk (evaluation skips and counts them): 1 (Archery/v_Archery_g22_c01.avi)']


def _hmdb51(root):
  for name in os.listdir(os.path.join(root, 'testTrainMulti_7030_splits')):
    if name.endswith('_test_split1.txt'):
      with open(os.path.join(root, 'testTrainMulti_7030_splits', name)) as f:
        _touch(root, *[f'{name[:-len("_test_split1.txt")]}/{line.split()[0]}' for line in f])
  return [
      '2 classes (published: 51)',
      'split 1: train 2 listed, published 3570, 2 on disk; test 2 listed, published 1530, 2 on '
      'disk',
      'split 2: train 4 listed, published 3570, 4 on disk; test 2 listed, published 1530, 2 on '
      'disk',
      'split 3: train 2 listed, published 3570, 2 on disk; test 2 listed, published 1530, 2 on '
      'disk']


def _esc50(root):
  with open(os.path.join(root, 'meta', 'esc50.csv')) as f:
    _touch(root, *[f'audio/{row["filename"]}' for row in csv.DictReader(f)
                   if row['filename'] != '5-105049-A-0.wav'])
  return ['3 classes (published: 50)'] + [
      f'split {k}: train 8 listed, published 1600, {8 if k == 5 else 7} on disk; test 2 listed, '
      f'published 400, {1 if k == 5 else 2} on disk' for k in range(1, 6)] + [
          'not on disk (evaluation skips and counts them): 1 (5-105049-A-0.wav)']


def _msrvtt(root):
  _touch(root, 'videos/all/video9770.mp4', 'videos/all/video7606.mp4', 'video8114.webm')
  return ['split 1k-A: test 4 listed, published 1000, 3 on disk',
          'not on disk (evaluation skips and counts them): 1 (video8773)']


def _youcook2(root):
  _touch(root, 'raw_videos/validation/101/xHr8X2Wpmno.mp4',
         'raw_videos/training/113/GLd3aX16zBg.mp4')
  return ['split validation: test 3 listed, 2 on disk',
          'not on disk (evaluation skips and counts them): 1 (V53XmPeyjIU)']


@pytest.mark.parametrize('dataset,tree', [
    ('ucf101', _ucf101), ('hmdb51', _hmdb51), ('esc50', _esc50), ('msrvtt', _msrvtt),
    ('youcook2', _youcook2)])
def test_check_counts_a_tree_as_its_benchmark_reads_it(dataset, tree, tmp_path, capsys):
  root = _tree(tmp_path, dataset)
  expected = tree(root)
  status, out, _ = _main(f'{dataset}/check.py', [f'--data_dir={root}'], capsys)
  assert status == 0
  assert out == expected + [f'evaluate: python -m mmv.evaluate --benchmark {dataset} '
                            f'--data_dir {root} --workdir WORKDIR']


def test_check_of_a_bad_tree_is_one_line_and_status_1(tmp_path, capsys):
  status, out, _ = _main('esc50/check.py', [f'--data_dir={_tree(tmp_path, "esc50")}'],
                         capsys)  # The list, no wav.
  assert status == 1 and out[-1].startswith('no listed file is on disk')
  root = _tree(tmp_path, 'ucf101')
  _ucf101(root)
  os.remove(os.path.join(root, 'ucfTrainTestlist', 'classInd.txt'))
  status, _, _ = _main('ucf101/check.py', [f'--data_dir={root}'], capsys)
  assert status.startswith('ucf101 check: FileNotFoundError: missing the official split file')
  assert '\n' not in status


def test_scripts_run_as_documented(tmp_path):
  """`python data/<name>/check.py ...` from anywhere: the scripts find their shared module."""
  root = _tree(tmp_path, 'msrvtt')
  _msrvtt(root)
  result = subprocess.run([sys.executable, os.path.join(ROOT, 'data', 'msrvtt', 'check.py'),
                           f'--data_dir={root}'], cwd=str(tmp_path), capture_output=True,
                          text=True, timeout=120, env={**os.environ, 'PYTHONPATH': ROOT})
  assert result.returncode == 0, result.stderr
  assert 'split 1k-A: test 4 listed, published 1000, 3 on disk' in result.stdout
