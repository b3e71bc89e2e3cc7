"""The image benchmarks' readers (PASCAL VOC 2007, ImageNet) on small trees in the official
layouts, the synthetic image benchmark, and the VOC2007 devkit's AP against independent
computations (a hand-worked 11-point example, scikit-learn's precision-recall curve)."""

import importlib.util
import os

import numpy as np
from PIL import Image
import pytest
from sklearn import metrics
import tensorflow as tf

from mmv import benchmarks
from mmv.benchmarks import voc2007
from mmv.data import format as fmt
from mmv.ingest import images
from mmv.evaluators import multilabel
from tests import image_trees


def _records(files):
  """{filename: (label texts, number of frames, (height, width) of the first)} of shards."""
  context = {fmt.FILENAME: tf.io.FixedLenFeature([], tf.string),
             fmt.LABEL_TEXT: tf.io.VarLenFeature(tf.string)}
  sequence = {fmt.IMAGE: tf.io.FixedLenSequenceFeature([], tf.string)}
  out = {}
  for record in tf.data.TFRecordDataset(list(files)).as_numpy_iterator():
    ctx, seq = tf.io.parse_single_sequence_example(record, context, sequence)
    jpegs = seq[fmt.IMAGE].numpy()
    labels = tuple(sorted(t.decode() for t in tf.sparse.to_dense(ctx[fmt.LABEL_TEXT]).numpy()))
    shape = tuple(tf.io.decode_jpeg(jpegs[0]).shape[:2])
    out[ctx[fmt.FILENAME].numpy().decode()] = (labels, len(jpegs), shape)
  return out


TRAINVAL = {
    '000005': [('chair', 0), ('chair', 1), ('person', 0)],  # A difficult chair, a clear one.
    '000007': [('car', 1)],  # Difficult only: label 0 for car.
    '000009': [('horse', 0), ('person', 1), ('person', 1)],
    '000012': [('car', 0)],
}
TEST = {'000001': [('dog', 0), ('person', 0)], '000002': [('train', 1)],
        '000004': [('car', 0)]}


def test_voc2007_reads_the_official_layout_with_difficult_labels(tmp_path):
  root = image_trees.voc_tree(str(tmp_path / 'voc'), TRAINVAL, TEST, corrupt=('000012',),
                              missing=('000004',))
  prepared = benchmarks.prepare('voc2007', root, cache_dir=str(tmp_path / 'cache'),
                                num_workers=1, short_side=32, progress=False)['test']
  # The corrupt image and the missing one are skipped and counted, with their reasons.
  assert (prepared.train.num_listed, prepared.train.num_clips) == (4, 3)
  assert (prepared.test.num_listed, prepared.test.num_clips) == (3, 2)
  assert [n for n, _ in prepared.train.skipped] == ['000012']
  assert 'not a readable image' in prepared.train.skipped[0][1]
  assert prepared.test.skipped == (('000004', 'no such file'),)
  assert prepared.class_names[:20] == image_trees.VOC_CLASSES
  train = _records(prepared.train.files)
  # The devkit's rule: a clear object makes the class positive; difficult ones alone, 0.
  assert train['000005'][0] == ('chair', 'person')
  assert train['000007'][0] == ('difficult/car',)
  assert train['000009'][0] == ('difficult/person', 'horse')
  assert all(n == 1 and min(shape) == 32 for _, n, shape in train.values())  # 1-frame records.
  assert _records(prepared.test.files)['000002'][0] == ('difficult/train',)
  # Multi-hot labels as evaluation reads them → targets 1 / 0 / -1.
  multi_hot = np.zeros((1, 40))
  multi_hot[0, [image_trees.VOC_CLASSES.index('chair'),
                20 + image_trees.VOC_CLASSES.index('car')]] = 1
  t = voc2007.targets(multi_hot)[0]
  assert t[image_trees.VOC_CLASSES.index('chair')] == 1
  assert t[image_trees.VOC_CLASSES.index('car')] == 0
  assert (np.delete(t, [8, 6]) == -1).all()
  # A second prepare reads the cache (nothing converted again).
  mtime = os.path.getmtime(os.path.realpath(prepared.train.files[0]))
  again = benchmarks.prepare('voc2007', root, cache_dir=str(tmp_path / 'cache'), num_workers=1,
                             short_side=32, progress=False)['test']
  assert os.path.getmtime(os.path.realpath(again.train.files[0])) == mtime


def test_voc2007_missing_files_are_one_line_errors(tmp_path):
  root = image_trees.voc_tree(str(tmp_path / 'voc'), TRAINVAL, TEST)
  voc = os.path.join(root, 'VOCdevkit', 'VOC2007')
  os.rename(os.path.join(voc, 'ImageSets', 'Main', 'test.txt'), str(tmp_path / 'test.txt'))
  with pytest.raises(FileNotFoundError, match=r'missing the official image list .*test.txt'):
    voc2007.read_layout(root)
  os.rename(str(tmp_path / 'test.txt'), os.path.join(voc, 'ImageSets', 'Main', 'test.txt'))
  os.remove(os.path.join(voc, 'Annotations', '000002.xml'))
  with pytest.raises(FileNotFoundError, match='missing the annotation .*000002.xml'):
    voc2007.read_layout(root)
  with pytest.raises(FileNotFoundError, match='no VOC2007 ImageSets/Main'):
    voc2007.read_layout(str(tmp_path / 'elsewhere'))


WNIDS = ('n01440764', 'n01443537', 'n01484850')  # Sorted: label ids 0, 1, 2.
# The devkit numbers classes its own way (ILSVRC2012_ID), not in wnid order.
IDS = {3: 'n01440764', 1: 'n01443537', 2: 'n01484850'}
VAL_TRUTH = [2, 3, 1, 1, 3]  # ILSVRC2012_ID of validation images 1..5.


def _imagenet(root, *, corrupt=None, missing=None):
  for k, wnid in enumerate(WNIDS):
    for j in range(2):
      image_trees.write_jpeg(os.path.join(root, 'train', wnid, f'{wnid}_{j}.JPEG'), 10 * k + j,
                             mode='CMYK' if (k, j) == (0, 1) else 'RGB')
  for number in range(1, len(VAL_TRUTH) + 1):
    path = os.path.join(root, 'val', f'ILSVRC2012_val_{number:08d}.JPEG')
    if number == corrupt:
      image_trees.write_corrupt(path)
    elif number != missing:
      image_trees.write_jpeg(path, 100 + number)
  devkit = os.path.join(root, 'ILSVRC2012_devkit_t12', 'data')
  os.makedirs(devkit, exist_ok=True)
  with open(os.path.join(devkit, 'ILSVRC2012_validation_ground_truth.txt'), 'w') as f:
    f.write(''.join(f'{i}\n' for i in VAL_TRUTH))
  image_trees.imagenet_meta(os.path.join(devkit, 'meta.mat'), sorted(IDS.items()),
                            extra=[(1001, 'n00001740')])  # An inner synset: no class.
  return root


def test_imagenet_reads_the_devkit_ground_truth_and_meta_mat(tmp_path):
  root = _imagenet(str(tmp_path / 'imagenet'), corrupt=4, missing=5)
  prepared = benchmarks.prepare('imagenet', root, cache_dir=str(tmp_path / 'cache'),
                                num_workers=1, short_side=24, progress=False)['val']
  assert prepared.class_names == WNIDS  # The leaves of meta.mat, sorted; no inner synset.
  assert (prepared.train.num_listed, prepared.train.num_clips) == (6, 6)  # CMYK read too.
  assert (prepared.test.num_listed, prepared.test.num_clips) == (5, 3)
  assert dict(prepared.test.skipped)['ILSVRC2012_val_00000005'] == 'no such file'
  assert 'not a readable image' in dict(prepared.test.skipped)['ILSVRC2012_val_00000004']
  val = _records(prepared.test.files)
  for number in (1, 2, 3):
    assert val[f'ILSVRC2012_val_{number:08d}'][0] == (IDS[VAL_TRUTH[number - 1]],)
  train = _records(prepared.train.files)
  assert train['n01484850/n01484850_1'][0] == ('n01484850',)
  assert all(n == 1 and min(shape) == 24 for _, n, shape in train.values())


def test_imagenet_val_folders_and_missing_devkit_files(tmp_path):
  root = _imagenet(str(tmp_path / 'imagenet'))
  devkit = os.path.join(root, 'ILSVRC2012_devkit_t12', 'data')
  os.remove(os.path.join(devkit, 'meta.mat'))
  with pytest.raises(FileNotFoundError, match='needs .*meta.mat'):
    benchmarks.get('imagenet').prepare_fn.keywords['read_layout'](root)
  os.remove(os.path.join(devkit, 'ILSVRC2012_validation_ground_truth.txt'))
  with pytest.raises(FileNotFoundError, match='no validation labels'):
    benchmarks.get('imagenet').prepare_fn.keywords['read_layout'](root)
  # val/<wnid>/ folders: the folder is the label; classes from train/ without meta.mat.
  for name in os.listdir(os.path.join(root, 'val')):
    os.remove(os.path.join(root, 'val', name))
  image_trees.write_jpeg(os.path.join(root, 'val', WNIDS[2], 'x.JPEG'), 7)
  layout = benchmarks.get('imagenet').prepare_fn.keywords['read_layout'](root)
  assert layout.class_names == WNIDS
  assert [(s.name, s.labels) for s in layout.clips['val']] == [('x', (WNIDS[2],))]


def test_synthetic_images_are_the_clips_first_frames(data_dir, tmp_path):
  prepared = benchmarks.prepare('synthetic_images', data_dir, cache_dir=str(tmp_path),
                                progress=False)['test']
  assert (prepared.train.num_clips, prepared.test.num_clips) == (64, 32)
  test = _records(prepared.test.files)
  original = _records(tf.io.gfile.glob(os.path.join(data_dir, 'test-*')))
  assert set(test) == set(original)
  assert all(test[k][0] == original[k][0] and test[k][1] == 1 for k in test)


def test_images_decode_any_mode_and_keep_the_short_side():
  gray = np.asarray(Image.new('L', (30, 20), 128).convert('RGB'))
  clip = images.read_image(gray, short_side=10)
  assert len(clip.jpegs) == 1
  assert tuple(tf.io.decode_jpeg(clip.jpegs[0]).shape) == (10, 16, 3)  # 15 → even 16.
  with pytest.raises(images.ImageError, match='uint8'):
    images.read_image(np.zeros((4, 4), np.uint8))
  with pytest.raises(images.ImageError, match='not a readable image'):
    images.read_image(b'garbage')


# --- The VOC2007 devkit's AP ---------------------------------------------------------------


def test_voc07_ap_on_a_hand_worked_example():
  scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
  targets = [1, -1, 0, 1, -1, 1]  # The third image is difficult: neither TP nor FP.
  # By hand: precision / recall at the ranks that count: 1/1 at 1/3, 1/2 at 1/3, 2/3 at 2/3,
  # 2/4 at 2/3, 3/5 at 1. Interpolated at t = 0, .1, ..., 1: t <= .3 → 1 (4 points),
  # .4 <= t <= .6 → 2/3 (3 points), t >= .7 → 3/5 (4 points).
  expected = (4 * 1.0 + 3 * (2 / 3) + 4 * 0.6) / 11
  assert multilabel.voc07_ap(scores, targets) == pytest.approx(expected, abs=1e-12)
  # scikit-learn's AP is not interpolated: Σ ΔR · P = (1 + 2/3 + 3/5) / 3 without the
  # difficult image; the two differ here, and agree on a perfect ranking.
  kept = [0, 1, 3, 4, 5]
  sk = metrics.average_precision_score(np.array(targets)[kept] > 0, np.array(scores)[kept])
  assert sk == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
  assert abs(sk - expected) > 0.005
  assert multilabel.voc07_ap([3, 2, 1], [1, 1, -1]) == 1.0
  assert metrics.average_precision_score([1, 1, 0], [3, 2, 1]) == 1.0


def test_voc07_ap_is_the_11_point_interpolation_of_sklearn_precision_recall_curve():
  rng = np.random.default_rng(0)
  for trial in range(20):
    n = int(rng.integers(5, 60))
    targets = rng.choice([-1, 0, 1], size=n, p=[0.6, 0.1, 0.3])
    targets[0] = 1
    scores = rng.permutation(n).astype(float)  # Distinct scores: no ties to group.
    keep = targets != 0  # The devkit ignores difficult images.
    precision, recall, _ = metrics.precision_recall_curve(targets[keep] > 0, scores[keep])
    precision, recall = precision[:-1], recall[:-1]  # sklearn's appended (P 1, R 0) point.
    expected = np.mean([precision[recall >= t].max() if (recall >= t).any() else 0.0
                        for t in np.linspace(0, 1, 11)])
    assert multilabel.voc07_ap(scores, targets) == pytest.approx(expected, abs=1e-12), trial


def test_mean_ap_and_the_one_vs_rest_probe_on_separable_features():
  rng = np.random.default_rng(1)
  targets = rng.choice([-1, 1], size=(60, 3))
  targets[:, 0][:3] = 0  # Difficult: left out of class 0's SVM and AP.
  features = np.where(targets > 0, 1.0, -1.0) + 0.1 * rng.normal(size=targets.shape)
  features[:3, 0] = 5.0  # Would be confident positives, were they not difficult.
  result = multilabel.linear_probe_multilabel(features[:40], targets[:40], features[40:],
                                              targets[40:], c_grid=(0.01, 1.0), folds=3)
  assert result['mAP'] == pytest.approx(100.0)
  assert len(result['C']) == 3 and len(result['cv_ap']) == 3
  with pytest.raises(ValueError, match='no positive test image'):
    multilabel.mean_ap(np.zeros((2, 2)), np.array([[1, -1], [1, -1]]))


def _check(relative, data_dir, capsys):
  """(status, stdout lines) of a data/ check script's main."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  spec = importlib.util.spec_from_file_location(
      'check_' + relative.replace('/', '_')[:-3], os.path.join(root, 'data', relative))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  try:
    module.main([f'--data_dir={data_dir}'])
    status = 0
  except SystemExit as e:
    status = e.code
  return status, capsys.readouterr().out.splitlines()


def test_data_checks_count_the_trees_as_the_readers_read_them(tmp_path, capsys):
  root = image_trees.voc_tree(str(tmp_path / 'voc'), TRAINVAL, TEST, missing=('000004',))
  status, out = _check('voc2007/check.py', root, capsys)
  assert status == 0
  assert out[:3] == ['20 classes (published: 20)',
                     'split test: train 4 listed, published 5011, 4 on disk; test 3 listed, '
                     'published 4952, 2 on disk',
                     'not on disk (evaluation skips and counts them): 1 (000004)']
  root = _imagenet(str(tmp_path / 'imagenet'), missing=5)
  status, out = _check('imagenet/check.py', root, capsys)
  assert status == 0
  assert out[:3] == ['3 classes (published: 1000)',
                     'split val: train 6 listed, published 1281167, 6 on disk; test 5 listed, '
                     'published 50000, 4 on disk',
                     'not on disk (evaluation skips and counts them): 1 '
                     '(ILSVRC2012_val_00000005)']
  os.remove(os.path.join(root, 'ILSVRC2012_devkit_t12', 'data', 'meta.mat'))
  status, _ = _check('imagenet/check.py', root, capsys)
  assert status.startswith('imagenet check: FileNotFoundError:') and '\n' not in status


def _fake_tfds(tfds_dir, name):
  """A TFDS build of voc/2007 or imagenet2012 made by TFDS from in-memory images."""
  tfds = pytest.importorskip('tensorflow_datasets')
  rng = np.random.default_rng(0)
  image = lambda: rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
  if name == 'voc':
    tfds_voc = pytest.importorskip('tensorflow_datasets.object_detection.voc')

    def objects(labels):
      return [{'bbox': tfds.features.BBox(0.1, 0.1, 0.5, 0.5), 'is_difficult': d,
               'is_truncated': False, 'label': c, 'pose': 'frontal'} for c, d in labels]

    def example(i, labels):
      return f'{i:06d}', {
          'image': image(), 'image/filename': f'{i:06d}.jpg', 'objects': objects(labels),
          'labels': sorted({c for c, _ in labels}),
          'labels_no_difficult': sorted({c for c, d in labels if not d})}

    class Fake(tfds_voc.Voc, skip_registration=True):
      name = 'voc'

      def _split_generators(self, dl_manager):
        return {'train': self._gen([example(1, [('dog', False), ('cat', True)])]),
                'validation': self._gen([example(2, [('cat', True), ('cat', False)])]),
                'test': self._gen([example(3, [('train', True)])])}

      def _gen(self, examples):  # pylint: disable=arguments-differ
        yield from examples

    builder = Fake(config='2007', data_dir=tfds_dir)
  else:
    class Fake(tfds.builder_cls('imagenet2012'), skip_registration=True):
      name = 'imagenet2012'

      def _split_generators(self, dl_manager):
        return {'train': self._gen([('n01440764_1.JPEG', 'n01440764'),
                                    ('n01443537_2.JPEG', 'n01443537')]),
                'validation': self._gen([('ILSVRC2012_val_00000001.JPEG', 'n01443537')])}

      def _gen(self, rows):  # pylint: disable=arguments-differ
        for file_name, label in rows:
          yield file_name, {'image': image(), 'label': label, 'file_name': file_name}

    builder = Fake(data_dir=tfds_dir)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      compute_stats=tfds.download.ComputeStatsMode.SKIP))
  return builder


def test_tfds_builds_are_read_with_the_raw_preprocessing(tmp_path):
  tfds_dir = str(tmp_path / 'tensorflow_datasets')
  _fake_tfds(tfds_dir, 'voc')
  p = benchmarks.prepare('voc2007', tfds_dir, num_workers=1, short_side=16,
                         progress=False)['test']
  assert p.source == 'tfds' and (p.train.num_clips, p.test.num_clips) == (2, 1)
  train = _records(p.train.files)
  # TFDS's labels_no_difficult are the positives; a class of difficult objects alone, 0.
  assert train['000001'][0] == ('difficult/cat', 'dog')
  assert train['000002'][0] == ('cat',)
  assert _records(p.test.files)['000003'][0] == ('difficult/train',)
  assert all(n == 1 and min(shape) == 16 for _, n, shape in train.values())
  _fake_tfds(tfds_dir, 'imagenet')
  p = benchmarks.prepare('imagenet', tfds_dir, num_workers=1, short_side=16,
                         progress=False)['val']
  assert p.source == 'tfds' and len(p.class_names) == 1000 and p.class_names[0] == 'n01440764'
  assert _records(p.test.files)['ILSVRC2012_val_00000001'][0] == ('n01443537',)
