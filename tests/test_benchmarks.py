"""Benchmark readers on tiny fake trees in each official layout, with real media files.

The videos are made with PyAV (tests/media_files.py): an AVI with MJPEG frames and PCM sound,
an MP4 with H.264 and AAC, an AVI and an MP4 without sound; the ESC-50 clips are real wavs.
Each tree copies them under the official names.
"""

import csv
import json
import os
import shutil

import pytest
import tensorflow as tf

from configs import tiny
from mmv import benchmarks
from mmv import evaluate_protocol
from mmv.ingest import convert
from mmv.data import format as fmt
from mmv.data import stream
from mmv.data import synthetic
from tests import media_files

# Launches processes, converts media or trains: not in `make test-fast`.
pytestmark = pytest.mark.slow

OPTIONS = dict(short_side=32, sample_rate=16000, num_workers=1, progress=False)


@pytest.fixture(scope='module')
def media(tmp_path_factory):
  d = tmp_path_factory.mktemp('media')
  media_files.write_video(str(d / 'sound.avi'), video_codec='mjpeg', audio_codec='pcm_s16le',
                          audio_rate=44100)
  media_files.write_video(str(d / 'sound.mp4'), video_codec='libx264', audio_codec='aac')
  media_files.write_video(str(d / 'silent.avi'), video_codec='mjpeg')
  media_files.write_video(str(d / 'silent.mp4'), video_codec='mpeg4')
  media_files.write_wav(str(d / 'sound.wav'))
  return d


def _copy(media_dir, source, path):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  shutil.copy(media_dir / source, path)


def _write(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    f.write(text)


def _records(shards):
  """{filename: [(label ids, captions, start µs, end µs, frames, has audio)]} of Shards."""
  out = {}
  for path in shards.files:
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
      example = tf.train.SequenceExample.FromString(record)
      c = example.context.feature
      frames = len(example.feature_lists.feature_list[fmt.IMAGE].feature)
      out.setdefault(c[fmt.FILENAME].bytes_list.value[0].decode(), []).append((
          list(c[fmt.LABEL_INDEX].int64_list.value),
          [s.decode() for s in c[fmt.CAPTION].bytes_list.value],
          c[fmt.START_US].int64_list.value[0], c[fmt.END_US].int64_list.value[0], frames,
          c[fmt.HAS_AUDIO].int64_list.value[0]))
  return out


def _labels(shards):
  return {name: rows[0][0][0] for name, rows in _records(shards).items()}


@pytest.fixture
def count_conversions(monkeypatch):
  """The clips each call of the converter was given (a list of lists of names)."""
  calls = []
  original = convert.convert

  def counting(specs, *args, **kwargs):
    calls.append([s.name for s in specs])
    return original(specs, *args, **kwargs)

  monkeypatch.setattr(convert, 'convert', counting)
  return calls


# UCF101 ------------------------------------------------------------------------------------

# classInd's order (case-insensitive) is not Python's: sorted() puts HammerThrow first.
UCF_CLASSES = ('Archery', 'Hammering', 'HammerThrow')


def _ucf_tree(root, media_dir):
  lists = os.path.join(root, 'ucfTrainTestlist')
  _write(os.path.join(lists, 'classInd.txt'),
         ''.join(f'{i} {c}\r\n' for i, c in enumerate(UCF_CLASSES, 1)))
  for k in (1, 2, 3):  # Split k tests on group k; group 4 is always for training.
    train = [f'{c}/v_{c}_g{g:02d}_c01.avi {i}' for i, c in enumerate(UCF_CLASSES, 1)
             for g in (1, 2, 3, 4) if g != k]
    test = [f'{c}/v_{c}_g{k:02d}_c01.avi' for c in UCF_CLASSES]
    _write(os.path.join(lists, f'trainlist0{k}.txt'), '\r\n'.join(train) + '\r\n')
    _write(os.path.join(lists, f'testlist0{k}.txt'), '\r\n'.join(test) + '\r\n')
  sources = ['sound.avi', 'silent.avi']
  for i, c in enumerate(UCF_CLASSES):
    for g in (1, 2, 3, 4):
      name = f'v_{c}_g{g:02d}_c01.avi'
      if c == 'HammerThrow' and g == 1:
        name = name.replace('HammerThrow', 'Hammerthrow')  # Found despite the case.
      if not (c == 'Hammering' and g == 4):  # Listed, not on disk: skipped.
        _copy(media_dir, sources[(i + g) % 2], os.path.join(root, 'UCF-101', c, name))


def test_ucf101_splits_labels_and_cache(media, tmp_path, count_conversions):
  root = str(tmp_path / 'ucf')
  _ucf_tree(root, media)
  bench = benchmarks.get('ucf101')
  assert (bench.kind, bench.modality, bench.splits) == ('linear', 'video', ('1', '2', '3'))
  prepared = bench.prepare(root, **OPTIONS)
  assert list(prepared) == ['1', '2', '3']
  # 11 videos on disk, in 4 parts (by their side in each split), each converted once.
  assert sorted(len(names) for names in count_conversions) == [3, 3, 3, 3]
  assert sum(len(set(n)) for n in count_conversions) == 12
  parts = os.path.join(root, '.mmv_cache', 'ucf101', 'parts')
  assert sorted(f for f in os.listdir(parts) if f.endswith('.json')) == [
      'test1_train2_train3.json', 'train1_test2_train3.json', 'train1_train2_test3.json',
      'train1_train2_train3.json']
  for k in ('1', '2', '3'):
    p = prepared[k]
    assert p.class_names == UCF_CLASSES and p.source == 'raw' and p.fps == 25.0
    assert p.data_dir == os.path.join(root, '.mmv_cache', 'ucf101', k)
    with open(os.path.join(p.data_dir, 'labels.txt')) as f:
      assert f.read().split() == list(UCF_CLASSES)
    test = _labels(p.test)
    assert test == {f'{c}/v_{c}_g0{k}_c01.avi': i for i, c in enumerate(UCF_CLASSES)}
    train = _labels(p.train)
    assert sorted(train) == sorted(f'{c}/v_{c}_g{g:02d}_c01.avi' for c in UCF_CLASSES
                                   for g in (1, 2, 3, 4) if g != int(k)
                                   and not (c == 'Hammering' and g == 4))
    assert all(label == UCF_CLASSES.index(name.split('/')[0]) for name, label in train.items())
    assert (p.train.num_clips, p.test.num_clips, p.test.num_skipped) == (8, 3, 0)
    assert p.train.skipped == (('Hammering/v_Hammering_g04_c01.avi', 'MediaError: no such file'),)
    assert p.summary()['train_skipped'] == 1
    assert p.train.pattern == os.path.join(p.data_dir, 'train-*-of-*')
    assert all(os.path.basename(f).startswith('train-') for f in p.train.files)
  # Video benchmarks store no soundtrack by default.
  assert {r[5] for rows in _records(prepared['1'].train).values() for r in rows} == {0}

  # A second call reads the cache: no conversion, shards untouched.
  stamps = {f: os.stat(os.path.join(parts, f)).st_mtime_ns for f in os.listdir(parts)}
  count_conversions.clear()
  again = benchmarks.prepare('ucf101', root, split=2, **OPTIONS)
  assert count_conversions == [] and list(again) == ['2'] and again['2'] == prepared['2']
  assert stamps == {f: os.stat(os.path.join(parts, f)).st_mtime_ns for f in os.listdir(parts)}

  # The pipeline reads a split's directory as it is.
  c = tiny.get_config().data
  c.data_dir, c.modalities, c.with_names = prepared['3'].data_dir, ('video',), True
  batch, = list(stream.eval_stream(c, 'test', batch_size=3))
  assert dict(zip(batch['filename'], batch['label'])) == {
      f'{c}/v_{c}_g03_c01.avi'.encode(): i for i, c in enumerate(UCF_CLASSES)}


def test_ucf101_bad_lists(media, tmp_path):
  root = str(tmp_path / 'ucf')
  _ucf_tree(root, media)
  lists = os.path.join(root, 'ucfTrainTestlist')
  with open(os.path.join(lists, 'trainlist02.txt')) as f:
    good = f.read()
  _write(os.path.join(lists, 'trainlist02.txt'), good + 'Juggling/v_Juggling_g01_c01.avi 4\n')
  with pytest.raises(ValueError, match="class 'Juggling' of .* is not in classInd"):
    benchmarks.prepare('ucf101', root, **OPTIONS)
  _write(os.path.join(lists, 'trainlist02.txt'), good.replace('.avi 3', '.avi 2'))
  with pytest.raises(ValueError, match='has class index 2, but classInd.txt gives HammerThrow '
                     'index 3'):
    benchmarks.prepare('ucf101', root, **OPTIONS)
  _write(os.path.join(lists, 'trainlist02.txt'), good)
  os.remove(os.path.join(lists, 'testlist03.txt'))
  with pytest.raises(FileNotFoundError, match='testlist03.txt'):
    benchmarks.prepare('ucf101', root, **OPTIONS)
  with pytest.raises(FileNotFoundError, match='classInd.txt'):
    benchmarks.prepare('ucf101', str(tmp_path), **OPTIONS)
  with pytest.raises(ValueError, match=r"ucf101 has splits \('1', '2', '3'\), not 4"):
    benchmarks.prepare('ucf101', root, split=4)
  with pytest.raises(TypeError, match='short_sid'):
    benchmarks.prepare('ucf101', root, short_sid=3)


# HMDB51 ------------------------------------------------------------------------------------

HMDB_CLASSES = ('brush_hair', 'cartwheel', 'shoot_ball')
# Per video: its role in splits 1, 2, 3 (1 train, 2 test, 0 unused).
HMDB_ROLES = {'a': '121', 'b': '210', 'c': '000', 'd': '112'}


def _hmdb_tree(root, media_dir):
  for c in HMDB_CLASSES:
    for k in (1, 2, 3):
      lines = [f'{c}_{v}_u_nm_np1_fr_goo_0.avi {roles[k - 1]} ' for v, roles in HMDB_ROLES.items()]
      _write(os.path.join(root, 'testTrainMulti_7030_splits', f'{c}_test_split{k}.txt'),
             '\n'.join(lines) + '\n')
    for v in HMDB_ROLES:
      if not (c == 'cartwheel' and v == 'd'):
        _copy(media_dir, 'silent.avi', os.path.join(root, c, f'{c}_{v}_u_nm_np1_fr_goo_0.avi'))


def test_hmdb51_splits_and_unused_videos(media, tmp_path, count_conversions):
  root = str(tmp_path / 'hmdb')
  _hmdb_tree(root, media)
  prepared = benchmarks.prepare('hmdb51', root, **OPTIONS)
  # Videos `c` (unused by every split) are not converted; 4 memberships → 3 parts + 'd'.
  assert sum(len(n) for n in count_conversions) == 9
  name = lambda c, v: f'{c}/{c}_{v}_u_nm_np1_fr_goo_0.avi'
  for k in ('1', '2', '3'):
    p = prepared[k]
    assert p.class_names == HMDB_CLASSES
    for side, code in (('train', '1'), ('test', '2')):
      shards = getattr(p, side)
      expected = {name(c, v) for c in HMDB_CLASSES for v, roles in HMDB_ROLES.items()
                  if roles[int(k) - 1] == code}
      labels = _labels(shards)
      missing = {name('cartwheel', 'd')} & expected
      assert set(labels) == expected - missing
      assert {n for n, _ in shards.skipped} == missing
      assert all(label == HMDB_CLASSES.index(n.split('/')[0]) for n, label in labels.items())


def test_hmdb51_bad_split_files(media, tmp_path):
  root = str(tmp_path / 'hmdb')
  _hmdb_tree(root, media)
  splits = os.path.join(root, 'testTrainMulti_7030_splits')
  _write(os.path.join(splits, 'shoot_ball_test_split2.txt'), 'x.avi 3\n')
  with pytest.raises(ValueError, match="expected lines `<video>.avi <0|1|2>`, got 'x.avi 3'"):
    benchmarks.prepare('hmdb51', root, **OPTIONS)
  os.remove(os.path.join(splits, 'shoot_ball_test_split2.txt'))
  with pytest.raises(FileNotFoundError, match='shoot_ball_test_split2.txt'):
    benchmarks.prepare('hmdb51', root, **OPTIONS)
  _write(os.path.join(splits, 'shoot_ball_test_split2.txt'), '')
  _write(os.path.join(splits, 'jump_test_split1.txt'), 'j.avi 1\n')
  with pytest.raises(ValueError, match=r"classes \['jump'\] that have no directory"):
    benchmarks.prepare('hmdb51', root, **OPTIONS)
  shutil.rmtree(splits)
  with pytest.raises(FileNotFoundError, match='testTrainMulti_7030_splits'):
    benchmarks.prepare('hmdb51', root, **OPTIONS)


# ESC-50 ------------------------------------------------------------------------------------

ESC_ROWS = [  # filename, fold, target, category
    ('1-100-A-0.wav', 1, 0, 'dog'), ('2-200-A-2.wav', 2, 2, 'pig'),
    ('3-300-A-1.wav', 3, 1, 'rooster'), ('4-400-A-0.wav', 4, 0, 'dog'),
    ('5-500-A-2.wav', 5, 2, 'pig'), ('5-501-A-1.wav', 5, 1, 'rooster'),
    ('3-301-A-0.wav', 3, 0, 'dog')]  # Not on disk.


def test_esc50_folds(media, tmp_path):
  root = str(tmp_path / 'esc')
  rows = ['filename,fold,target,category,esc10,src_file,take']
  for filename, fold, target, category in ESC_ROWS:
    rows.append(f'{filename},{fold},{target},{category},False,{filename[2:5]},A')
    if filename != '3-301-A-0.wav':
      _copy(media, 'sound.wav', os.path.join(root, 'audio', filename))
  _write(os.path.join(root, 'meta', 'esc50.csv'), '\n'.join(rows) + '\n')
  bench = benchmarks.get('esc50')
  assert (bench.kind, bench.modality, bench.splits) == ('linear', 'audio', ('1', '2', '3', '4',
                                                                              '5'))
  prepared = bench.prepare(root, cache_dir=str(tmp_path / 'cache'), **OPTIONS)
  assert prepared['1'].data_dir == str(tmp_path / 'cache' / 'esc50' / '1')
  for k, p in prepared.items():
    assert p.class_names == ('dog', 'rooster', 'pig')  # By target, not sorted.
    expected = {f: t for f, fold, t, _ in ESC_ROWS if f != '3-301-A-0.wav'}
    assert _labels(p.test) == {f: t for f, t in expected.items() if f[0] == k}
    assert _labels(p.train) == {f: t for f, t in expected.items() if f[0] != k}
    assert p.train.num_skipped + p.test.num_skipped == 1
  records = _records(prepared['1'].test)['1-100-A-0.wav']
  assert records[0][4:] == (0, 1)  # No frames, a waveform.
  _write(os.path.join(root, 'meta', 'esc50.csv'), '\n'.join(rows + ['x.wav,6,0,dog']) + '\n')
  with pytest.raises(ValueError, match="x.wav is in fold '6'"):
    bench.prepare(root, **OPTIONS)


# MSRVTT and YouCook2 -----------------------------------------------------------------------

def test_msrvtt_1k_a_captions(media, tmp_path):
  root = str(tmp_path / 'msrvtt')
  _copy(media, 'sound.mp4', os.path.join(root, 'videos', 'all', 'video9.mp4'))
  _copy(media, 'silent.mp4', os.path.join(root, 'videos', 'all', 'video7.mp4'))
  with open(os.path.join(root, 'MSRVTT_JSFUSION_test.csv'), 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['', 'key', 'vid_key', 'video_id', 'sentence'])
    writer.writerow([0, 'ret0', 'msr9', 'video9', 'a man is singing, loudly'])
    writer.writerow([1, 'ret1', 'msr10', 'video10', 'a lost video'])
    writer.writerow([2, 'ret2', 'msr7', 'video7', 'cars race on a track'])
  bench = benchmarks.get('msrvtt')
  assert (bench.kind, bench.splits, bench.fps) == ('retrieval', ('1k-A',), 25.0)
  p = bench.prepare(root, **OPTIONS)['1k-A']
  assert p.train is None and p.fps == 25.0 and p.class_names == ()
  assert p.test.num_clips == 2 and p.test.skipped == (('video10', 'MediaError: no such file'),)
  records = _records(p.test)
  assert {k: v[0][1] for k, v in records.items()} == {
      'video9': ['a man is singing, loudly'], 'video7': ['cars race on a track']}
  assert records['video9'][0][4] == 40  # 1.6 s at 25 fps.
  with open(os.path.join(p.data_dir, 'vocab.txt')) as f:
    assert set(f.read().split()) == {'a', 'man', 'is', 'singing', 'loudly', 'lost', 'video',
                                     'cars', 'race', 'on', 'track'}
  os.remove(os.path.join(root, 'MSRVTT_JSFUSION_test.csv'))
  with pytest.raises(FileNotFoundError, match='MSRVTT_JSFUSION_test.csv'):
    bench.prepare(root, **OPTIONS)


def test_youcook2_validation_segments(media, tmp_path):
  root = str(tmp_path / 'youcook2')
  _copy(media, 'sound.mp4', os.path.join(root, 'raw_videos', 'validation', '113', 'vidA.mp4'))
  _copy(media, 'silent.avi', os.path.join(root, 'flat', 'vidB.avi'))
  _copy(media, 'silent.avi', os.path.join(root, 'raw_videos', 'training', '113', 'vidT.avi'))
  segment = lambda s, e, text: {'segment': [s, e], 'sentence': text, 'id': 0}
  database = {
      'vidB': {'subset': 'validation', 'annotations': [segment(0.1, 0.9, 'cut the onion')]},
      'vidA': {'subset': 'validation', 'annotations': [segment(0.2, 0.8, 'add salt'),
                                                       segment(0.8, 1.5, 'stir the pot')]},
      'vidT': {'subset': 'training', 'annotations': [segment(0, 1, 'training only')]},
      'vidX': {'subset': 'validation', 'annotations': [segment(0, 1, 'gone'),
                                                       segment(1, 2, 'gone too')]},
  }
  _write(os.path.join(root, 'annotations', 'youcookii_annotations_trainval.json'),
         json.dumps({'database': database}))
  p = benchmarks.prepare('youcook2', root, **OPTIONS)['validation']
  assert p.train is None and p.test.num_clips == 3
  assert [n for n, _ in p.test.skipped] == ['vidX', 'vidX']
  records = _records(p.test)
  assert sorted(records) == ['vidA', 'vidB']
  assert [r[1:4] for r in records['vidA']] == [(['add salt'], 200000, 800000),
                                               (['stir the pot'], 800000, 1500000)]
  assert records['vidB'][0][1:4] == (['cut the onion'], 100000, 900000)
  assert [r[4] for r in records['vidA']] == [15, 18]  # 0.6 s and 0.7 s at 25 fps.


# Kinetics ----------------------------------------------------------------------------------

def test_kinetics_lists_cut_and_whole_videos(media, tmp_path, count_conversions):
  root = str(tmp_path / 'kinetics')
  header = 'label,youtube_id,time_start,time_end,split\n'
  _write(os.path.join(root, 'annotations', 'train.csv'), header + (
      'riding a bike,bike1,0,1,train\n'
      'abseiling,rope1,1,2,train\n'
      '"passing American football (in game)",ball1,0,1,train\n'
      'abseiling,gone1,0,1,train\n'))
  _write(os.path.join(root, 'annotations', 'validate.csv'), header + (
      'riding a bike,bike2,0,1,validate\n'
      'abseiling,gone2,0,1,validate\n'))
  _write(os.path.join(root, 'annotations', 'test.csv'),
         'youtube_id,time_start,time_end,split\ntest1,0,1,test\n')
  _copy(media, 'sound.mp4', os.path.join(root, 'train', 'riding a bike', 'bike1_000000_000001.mp4'))
  _copy(media, 'silent.mp4', os.path.join(root, 'train', 'rope1.mp4'))  # The whole video.
  _copy(media, 'silent.mp4', os.path.join(root, 'train', 'ball1_000000_000001.mp4'))
  _copy(media, 'sound.mp4', os.path.join(root, 'val', 'bike2_000000_000001.mp4'))
  prepared = benchmarks.prepare('kinetics', root, **OPTIONS)
  assert list(prepared) == ['val']  # The test list has no labels.
  p = prepared['val']
  classes = ('abseiling', 'passing American football (in game)', 'riding a bike')
  assert p.class_names == classes
  assert _labels(p.train) == {'bike1_000000_000001': 2, 'rope1_000001_000002': 0,
                              'ball1_000000_000001': 1}
  assert _labels(p.test) == {'bike2_000000_000001': 2}
  assert [n for n, _ in p.train.skipped] == ['gone1_000000_000001']
  assert [n for n, _ in p.test.skipped] == ['gone2_000000_000001']
  rope = _records(p.train)['rope1_000001_000002'][0]
  assert rope[2:5] == (1000000, 1600000, 15)  # From 1 s to the end of the 1.6 s file, 25 fps.
  with pytest.raises(ValueError, match="no split test in"):
    benchmarks.prepare('kinetics', root, split='test', **OPTIONS)

  # A video downloaded later: its part alone is converted again.
  _copy(media, 'silent.avi', os.path.join(root, 'train', 'gone1_000000_000001.avi'))
  count_conversions.clear()
  p = benchmarks.prepare('kinetics', root, split='val', **OPTIONS)['val']
  assert len(count_conversions) == 1 and len(count_conversions[0]) == 4
  assert (p.train.num_clips, p.train.num_skipped, p.test.num_skipped) == (4, 0, 1)
  # Other conversion options make another conversion.
  count_conversions.clear()
  benchmarks.prepare('kinetics', root, split='val', **{**OPTIONS, 'short_side': 16})
  assert len(count_conversions) == 2


def test_nothing_on_disk_is_an_error(tmp_path):
  _write(str(tmp_path / 'train.csv'), 'label,youtube_id,time_start,time_end,split\n'
         'a,x,0,1,train\nb,y,0,1,val\n')
  with pytest.raises(FileNotFoundError, match='none of the videos the official lists name'):
    benchmarks.prepare('kinetics', str(tmp_path), **OPTIONS)
  with pytest.raises(FileNotFoundError, match='no Kinetics list'):
    benchmarks.prepare('kinetics', str(tmp_path / 'empty'), **OPTIONS)


# Synthetic, registry -----------------------------------------------------------------------

def test_synthetic_used_in_place(tmp_path):
  root = str(tmp_path / 'synthetic')
  synthetic.generate(root, splits={'train': 3, 'test': 2}, num_shards={'train': 1, 'test': 1},
                     num_frames=4, frame_size=16)
  prepared = benchmarks.prepare('synthetic', root)['test']
  assert prepared.test.num_clips == 2 and prepared.train.num_clips == 3
  assert prepared.data_dir == root and prepared.source == 'shards'
  assert len(prepared.class_names) == 16
  assert prepared.train.files == (os.path.join(root, 'train-00000-of-00001'),)
  assert not os.path.exists(os.path.join(root, '.mmv_cache'))
  with pytest.raises(FileNotFoundError, match='no synthetic dataset'):
    benchmarks.prepare('synthetic', str(tmp_path))


def test_registry():
  assert sorted(benchmarks.BENCHMARKS) == [
      'audioset', 'esc50', 'hmdb51', 'imagenet', 'kinetics', 'moments_in_time', 'msrvtt',
      'synthetic', 'synthetic_images', 'ucf101', 'voc2007', 'youcook2']
  kinds = {name: (b.kind, b.modality) for name, b in benchmarks.BENCHMARKS.items()}
  assert kinds['esc50'] == ('linear', 'audio') and kinds['youcook2'] == ('retrieval', 'video')
  assert kinds['voc2007'] == kinds['imagenet'] == ('linear', 'image')
  protocols = {name: b.protocols for name, b in benchmarks.BENCHMARKS.items()}
  assert protocols['ucf101'] == ('linear', 'zero_shot') and protocols['msrvtt'] == ('retrieval',)
  assert protocols['audioset'] == ('mlp',) and kinds['audioset'] == ('linear', 'audio')
  assert set(protocols['synthetic']) == {'linear', 'retrieval', 'zero_shot'}
  with pytest.raises(ValueError, match='protocols'):
    benchmarks.Benchmark(name='x', kind='retrieval', modality='video', splits=('1',), fps=25.0,
                         layout='', prepare_fn=None, protocols=('linear',))
  with pytest.raises(ValueError, match="unknown benchmark 'ucf'"):
    benchmarks.get('ucf')


# TFDS --------------------------------------------------------------------------------------

def test_tfds_build_without_tensorflow_datasets(tmp_path, monkeypatch):
  _write(str(tmp_path / 'ucf101' / 'ucf101_2' / '2.0.0' / 'dataset_info.json'), '{}')
  monkeypatch.setitem(__import__('sys').modules, 'tensorflow_datasets', None)
  with pytest.raises(ImportError, match=r"is a TensorFlow Datasets build; reading it needs "
                     r"tensorflow-datasets \(pip install 'mmv\[tfds\]'\)"):
    benchmarks.prepare('ucf101', str(tmp_path), split=2)


def _fake_tfds_ucf101(tfds_dir, frames, config='ucf101_1'):
  """A TFDS build of ucf101/`config` made by TFDS from in-memory frames (no download)."""
  tfds = pytest.importorskip('tensorflow_datasets')
  from tensorflow_datasets.video import ucf101 as tfds_ucf101  # pylint: disable=g-import-not-at-top

  class Fake(tfds_ucf101.Ucf101, skip_registration=True):
    name = 'ucf101'

    def _split_generators(self, dl_manager):
      return {'train': self._generate_examples(['Archery', 'YoYo', 'Archery']),
              'test': self._generate_examples(['Hammering'])}

    def _generate_examples(self, labels):  # pylint: disable=arguments-differ
      for i, label in enumerate(labels):
        yield f'{label}_{i}', {'video': frames, 'label': label}

  builder = Fake(config=config, data_dir=tfds_dir)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      compute_stats=tfds.download.ComputeStatsMode.SKIP))
  return builder


def test_tfds_build_is_read_instead_of_raw_videos(tmp_path, count_conversions):
  import numpy as np  # pylint: disable=g-import-not-at-top
  frames = np.stack([np.full((8, 8, 3), 40 * k, np.uint8) for k in range(3)])
  tfds_dir = str(tmp_path / 'tensorflow_datasets')
  builder = _fake_tfds_ucf101(tfds_dir, frames)
  names = builder.info.features['label'].names
  p = benchmarks.prepare('ucf101', tfds_dir, split=1, **OPTIONS)['1']
  assert count_conversions == [] and p.source == 'tfds' and p.fps == 25.0
  assert p.departures == ()  # ucf101_1: the videos' own frame size, as the released script.
  assert p.class_names == tuple(names) and len(names) == 101
  assert p.data_dir == os.path.join(tfds_dir, '.mmv_cache', 'ucf101', '1')
  assert sorted(_labels(p.train).values()) == sorted(
      [names.index('Archery')] * 2 + [names.index('YoYo')])
  assert list(_labels(p.test).values()) == [names.index('Hammering')]
  (record,), = _records(p.test).values()
  assert record[4] == 3 and record[3] == 120000  # 3 frames at 25 fps.
  stamps = {f: os.stat(f).st_mtime_ns for f in p.train.files}
  again = benchmarks.prepare('ucf101', tfds_dir, split=1, **OPTIONS)['1']
  assert again == p and stamps == {f: os.stat(f).st_mtime_ns for f in p.train.files}
  # Splits 2 and 3 have no build here, and no raw layout either.
  with pytest.raises(FileNotFoundError, match='classInd.txt'):
    benchmarks.prepare('ucf101', tfds_dir, split=2, **OPTIONS)


def test_a_tfds_build_of_squashed_frames_is_not_the_published_input(tmp_path):
  """ucf101_1_256 resizes every video to 256x256; the released script read ucf101_1."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  tfds_dir = str(tmp_path / 'tensorflow_datasets')
  _fake_tfds_ucf101(tfds_dir, np.zeros((2, 256, 256, 3), np.uint8), config='ucf101_1_256')
  p = benchmarks.prepare('ucf101', tfds_dir, split=1, **OPTIONS)['1']
  assert p.source == 'tfds' and len(p.departures) == 1
  assert p.departures[0].startswith('frames: TFDS ucf101_1_256 resized every video to 256x256')
  config = tiny.get_config()
  settings = evaluate_protocol.protocol_settings(config, benchmarks.get('ucf101'), ['1'],
                                                 p.departures)
  assert not settings['published']
  assert settings['differs_from_published'] == list(p.departures)
