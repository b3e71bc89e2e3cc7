"""The Moments in Time reader on a small tree in the official layout, with real tiny mp4s
(tests/media_files.py): its classes in moments_categories.txt's order, its lists, videos not on
disk, malformed files, the check script, and the conversion through `prepare` (slow)."""

import importlib.util
import os
import shutil

import pytest
import tensorflow as tf

from mmv import benchmarks
from mmv.benchmarks import moments_in_time
from mmv.data import format as fmt
from tests import media_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# moments_categories.txt's order is not sorted order; names as the dataset spells them.
CATEGORIES = ('opening', 'adult+female+singing', 'barking')
TRAIN = {'opening': ['a1.mp4', 'a2.mp4'], 'adult+female+singing': ['b1.mp4', 'b2.mp4'],
         'barking': ['c1.mp4', 'c2.mp4', 'c3.mp4']}
VALIDATION = {'opening': ['va.mp4'], 'adult+female+singing': ['vb.mp4'], 'barking': ['vc.mp4']}
MISSING = 'training/barking/c3.mp4'  # Listed, not on disk.


def _write(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    f.write(text)


@pytest.fixture(scope='module')
def tree(tmp_path_factory):
  """DIR/Moments_in_Time_Raw/... as the archive extracts (one directory down)."""
  media = tmp_path_factory.mktemp('media')
  sources = [str(media / 'sound.mp4'), str(media / 'silent.mp4')]
  media_files.write_video(sources[0], video_codec='libx264', audio_codec='aac')
  media_files.write_video(sources[1], video_codec='mpeg4')
  top = str(tmp_path_factory.mktemp('mit'))
  root = os.path.join(top, 'Moments_in_Time_Raw')
  _write(os.path.join(root, 'moments_categories.txt'),
         ''.join(f'{name},{i}\n' for i, name in enumerate(CATEGORIES)))
  for part, listing, lists in (('training', 'trainingSet.csv', TRAIN),
                               ('validation', 'validationSet.csv', VALIDATION)):
    rows = [f'{c}/{f},{c},3,0' for c, files in lists.items() for f in files]
    _write(os.path.join(root, listing), '\n'.join(rows) + '\n')
    for i, row in enumerate(rows):
      relative = row.split(',')[0]
      if f'{part}/{relative}' != MISSING:
        os.makedirs(os.path.join(root, part, os.path.dirname(relative)), exist_ok=True)
        shutil.copy(sources[i % 2], os.path.join(root, part, relative))
  return top


def _expected(part, lists):
  return {f'{part}/{c}/{f}': CATEGORIES.index(c) for c, files in lists.items() for f in files}


def test_layout_classes_lists_and_missing_videos(tree):
  layout = moments_in_time.read_layout(tree)
  assert layout.class_names == CATEGORIES
  assert layout.splits == {'validation': {'train': ['training'], 'test': ['validation']}}
  for part, lists in (('training', TRAIN), ('validation', VALIDATION)):
    specs = layout.clips[part]
    assert {s.name: CATEGORIES.index(s.labels[0]) for s in specs} == _expected(part, lists)
    assert all((s.path is None) == (s.name == MISSING) for s in specs)
    assert all(s.path is None or s.path.endswith(s.name) for s in specs)
  bench = benchmarks.get('moments_in_time')
  assert (bench.kind, bench.modality, bench.splits) == ('linear', 'video', ('validation',))
  assert bench.fps == 25.0


def _check_script():
  spec = importlib.util.spec_from_file_location(
      'mit_check', os.path.join(ROOT, 'data', 'moments_in_time', 'check.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_check_script_counts_and_bad_files_are_one_line_errors(tree, tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    _check_script().main([f'--data_dir={tree}'])
  assert e.value.code == 0
  out = capsys.readouterr().out.splitlines()
  assert out[0] == '3 classes (published: 339)'
  assert out[1] == ('split validation: train 7 listed, published 802264, 6 on disk; '
                    'test 3 listed, published 33900, 3 on disk')
  assert out[2] == f'not on disk (evaluation skips and counts them): 1 ({MISSING})'
  bad = tmp_path / 'bad'
  shutil.copytree(os.path.join(tree, 'Moments_in_Time_Raw'), bad)
  with open(bad / 'validationSet.csv', 'a') as f:
    f.write('opening/x.mp4,barking,3,0\n')
  with pytest.raises(SystemExit) as e:
    _check_script().main([f'--data_dir={bad}'])
  assert str(e.value) == (f"moments_in_time check: ValueError: {bad}/validationSet.csv line 4: "
                          "opening/x.mp4 is listed as class 'barking', not its directory "
                          "'opening'")
  (bad / 'validationSet.csv').write_text('dancing/x.mp4,dancing\n')
  with pytest.raises(ValueError, match="class 'dancing' of dancing/x.mp4 is not in"):
    moments_in_time.read_layout(str(bad))
  (bad / 'moments_categories.txt').write_text('opening,0\nbarking,2\n')
  with pytest.raises(ValueError, match='indices are not 0, 1, 2'):
    moments_in_time.read_layout(str(bad))
  with pytest.raises(FileNotFoundError, match='no moments_categories.txt'):
    moments_in_time.read_layout(str(tmp_path / 'nothing'))


def _records(shards):
  """{video/filename: (label ids, frames)} of Shards."""
  out = {}
  for path in shards.files:
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
      example = tf.train.SequenceExample.FromString(record)
      c = example.context.feature
      out[c[fmt.FILENAME].bytes_list.value[0].decode()] = (
          list(c[fmt.LABEL_INDEX].int64_list.value),
          len(example.feature_lists.feature_list[fmt.IMAGE].feature))
  return out


@pytest.mark.slow
def test_prepare_converts_both_lists_with_category_ids(tree, tmp_path):
  """As ucf101's: `prepare(DIR, split=...)` → Prepared with train / test shards."""
  prepared = benchmarks.prepare('moments_in_time', tree, cache_dir=str(tmp_path / 'cache'),
                                split='validation', fps=25.0, short_side=32, num_workers=1,
                                progress=False)['validation']
  assert prepared.class_names == CATEGORIES and prepared.fps == 25.0
  assert (prepared.train.split, prepared.test.split) == ('train', 'test')
  train, test = _records(prepared.train), _records(prepared.test)
  expected_train = {k: v for k, v in _expected('training', TRAIN).items() if k != MISSING}
  assert {k: v[0] for k, v in train.items()} == {k: [v] for k, v in expected_train.items()}
  assert {k: v[0] for k, v in test.items()} == {
      k: [v] for k, v in _expected('validation', VALIDATION).items()}
  # 1.6 s stored at 25 fps.
  assert {v[1] for v in list(train.values()) + list(test.values())} == {
      int(media_files.FPS * media_files.SECONDS)}
  assert prepared.train.skipped == ((MISSING, prepared.train.skipped[0][1]),)
  assert (prepared.train.num_listed, prepared.test.num_listed) == (7, 3)
