"""The image benchmarks through the evaluation binary: a record with the image protocol and
its metrics (VOC mAP on a small VOC2007 tree), and the one-line errors of what cannot work."""

import copy
import json
import os
import shutil

import pytest

from mmv import benchmarks
from mmv import evaluate
from mmv import evaluate_inputs
from mmv import evaluate_protocol
from mmv import evaluate_split
from mmv import inference
from mmv import methods
from mmv.benchmarks import protocols
from tests import image_trees
from tests import test_evaluate_binary

CLASSES = image_trees.VOC_CLASSES
# Every class positive in some training images and negative in others, and positive in a test
# image (AP needs one); a few objects difficult.
TRAINVAL = {
    '000010': [(c, 0) for c in CLASSES[:10]],
    '000011': [(c, 0) for c in CLASSES[10:]],
    '000012': [(c, 0) for c in CLASSES[:10]] + [('dog', 1)],
    '000013': [(c, 0) for c in CLASSES[10:]] + [('car', 1)],
}
TEST = {'000001': [(c, 0) for c in CLASSES[:15]],
        '000002': [(c, 0) for c in CLASSES[15:]] + [('cat', 1)],
        '000003': [('person', 0)]}


@pytest.mark.slow
def test_voc2007_evaluation_records_the_protocol_and_map(one_step_run, tmp_path):
  _, source = one_step_run
  workdir = str(tmp_path / 'run')
  shutil.copytree(source, workdir)
  # Small crops keep the test quick: the block the binary reads is the run's config.json's.
  stored = json.loads(open(os.path.join(workdir, 'config.json')).read())
  stored['eval']['voc2007'] = {**protocols.DEFAULTS['voc2007'], 'min_resize': 32,
                               'crop_size': 32}
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    json.dump(stored, f)
  root = image_trees.voc_tree(str(tmp_path / 'voc'), TRAINVAL, TEST, missing=('000003',))
  code, out, err, _ = test_evaluate_binary.evaluate_binary(
      tmp_path, '--benchmark=voc2007', f'--data_dir={root}', f'--workdir={workdir}',
      f'--cache_dir={tmp_path / "cache"}', '--linear_c=1.0', f'--output={tmp_path / "r.json"}')
  assert code == 0, err[-2000:]
  (record,) = json.loads((tmp_path / 'r.json').read_text())
  assert record['benchmark'] == 'voc2007'
  assert 0.0 <= record['metrics']['linear_mAP'] <= 100.0
  result = record['splits']['test']
  assert set(result['linear_AP']) == set(CLASSES) and len(result['linear_C']) == 20
  protocol = record['protocol']
  assert protocol['modality'] == 'image' and protocol['published'] is False
  assert protocol['resize_short_side'] == 32 and protocol['crop'] == 32
  assert 'no source at hand' in protocol['source']
  assert protocol['image_model'].startswith('video backbone deflated on the fly')
  assert 'one binary' in protocol['linear']['classifier']
  # The missing test image is counted, and the report says metrics lack it.
  assert protocol['videos_skipped']['test']['linear_test'] == 1
  assert protocol['prepared']['test']['test_skipped'] == 1
  assert 'WARNING' in out and 'No source at hand states the paper' in out


def test_an_image_benchmark_needs_a_video_tower(config, monkeypatch):
  class AudioTextOnly:
    TOWERS = ('audio', 'text')

  monkeypatch.setattr(methods, 'get', lambda c: AudioTextOnly)
  with pytest.raises(ValueError, match='embeds image .*deflated video tower.*no video tower'):
    evaluate_split.served_protocols(config, benchmarks.get('voc2007'))


def test_image_protocol_blocks_are_checked(config):
  bench = benchmarks.get('imagenet')
  evaluate_protocol.check_eval_config(config, bench)
  config.eval.imagenet.train_passes = 3  # Three identical passes without augmentation.
  with pytest.raises(ValueError, match='train_augment is False'):
    evaluate_protocol.check_eval_config(config, bench)
  config.eval.imagenet.train_augment = True
  evaluate_protocol.check_eval_config(config, bench)
  # A run's config written before the image benchmarks gets their blocks at their defaults.
  stored = json.loads(json.dumps(config.to_dict()))
  del stored['eval']['voc2007']
  old, added = evaluate_protocol.with_new_fields(inference.config_from_dict(stored))
  assert 'eval.voc2007' in added and old.eval.voc2007.crop_size == 224


@pytest.mark.slow
def test_synthetic_images_with_augmented_passes(one_step_run, tmp_path):
  config, workdir = one_step_run
  config = copy.deepcopy(config)
  block = config.eval.synthetic_images
  block.train_augment, block.train_passes, block.train_flip = True, 2, True
  block.c = (1.0,)
  bench = benchmarks.get('synthetic_images')
  prepared = evaluate.prepare_splits(bench, config, config.data.data_dir,
                                     cache_dir=str(tmp_path), progress=False)
  record = evaluate.evaluate_step(config, bench, prepared, workdir, 1, cache_features=False,
                                  progress=False)
  assert record['benchmark'] == 'synthetic_images'
  result = record['splits']['test']
  # 64 training images, two augmented views each; 32 test images, one central view.
  assert (result['linear_num_train_clips'], result['linear_num_test_clips']) == (128, 32)
  assert 0.0 <= record['metrics']['linear_top1'] <= 100.0
  assert record['protocol']['linear']['train_images'] == (
      '2 passes of random crops 32, left-right flip')


def test_voc2007_labels_that_cannot_make_a_map_are_errors_before_any_feature(config, tmp_path):
  root = image_trees.voc_tree(str(tmp_path / 'voc'), TRAINVAL, TEST)
  bench = benchmarks.get('voc2007')
  prepared = bench.prepare(root, cache_dir=str(tmp_path / 'cache'), num_workers=1,
                           short_side=32, progress=False)
  config.eval.voc2007.c = (0.1, 1.0)  # C by CV: 2 positives and 2 negatives per class.
  # car and dog are difficult in one training image each: one negative left.
  with pytest.raises(ValueError, match=r'needs 2 positive and negative training images of '
                                       r'each class; car, dog have fewer'):
    evaluate_inputs.check_inputs(config, bench, prepared)
  config.eval.voc2007.c = (1.0,)
  evaluate_inputs.check_inputs(config, bench, prepared)
  test = {k: [o for o in v if o[0] != 'sofa'] for k, v in TEST.items()}
  root = image_trees.voc_tree(str(tmp_path / 'voc2'), TRAINVAL, test)
  prepared = bench.prepare(root, cache_dir=str(tmp_path / 'cache2'), num_workers=1,
                           short_side=32, progress=False)
  with pytest.raises(ValueError, match='no test image of sofa'):
    evaluate_inputs.check_inputs(config, bench, prepared)
