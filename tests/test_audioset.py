"""The AudioSet MLP protocol: its metrics against scikit-learn and scipy, the MLP classifier on
a separable case, and a multi-label AudioSet tree made here through the recipe, the converter
and the benchmark (slow)."""

import copy
import json
import os
import importlib.util

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as sk_metrics
import tensorflow as tf

from mmv import benchmarks
from mmv import evaluate
from mmv import evaluate_inputs
from mmv import sharding
from mmv.data import format as fmt
from mmv.evaluators import jax_mlp
from mmv.evaluators import report
from mmv.evaluators import tagging
from mmv.ingest import clip_lists
from mmv.ingest import convert
from tests import conftest
from tests import media_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _scores_with_ties(seed, n=60, k=7):
  rng = np.random.default_rng(seed)
  targets = (rng.random((n, k)) < 0.3).astype(np.float32)
  targets[0], targets[1] = 1, 0  # Every class has a positive and a negative.
  # Scores on a coarse grid: many ties, which AP and AUC must group as scikit-learn does.
  scores = np.round(targets * rng.normal(0.5, 1.0, (n, k)) + rng.normal(0, 1.0, (n, k)), 1)
  return scores, targets


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_map_and_auc_equal_scikit_learn_and_d_prime_is_the_formula(seed):
  scores, targets = _scores_with_ties(seed)
  result = tagging.tagging_metrics(scores, targets)
  assert result['mAP'] == pytest.approx(
      100 * sk_metrics.average_precision_score(targets, scores, average='macro'), abs=1e-9)
  assert result['AUC'] == pytest.approx(
      100 * sk_metrics.roc_auc_score(targets, scores, average='macro'), abs=1e-9)
  for k in range(targets.shape[1]):
    assert result['AP'][k] == pytest.approx(
        100 * sk_metrics.average_precision_score(targets[:, k], scores[:, k]), abs=1e-9)
  mean_auc = sk_metrics.roc_auc_score(targets, scores, average='macro')
  assert result['d_prime'] == pytest.approx(np.sqrt(2) * stats.norm.ppf(mean_auc), abs=1e-9)
  assert result['num_classes_scored'] == targets.shape[1]


def test_d_prime_known_values_and_unscored_classes():
  # Φ⁻¹(0.5) = 0; Φ⁻¹(0.8413447...) = 1 (the normal CDF at one σ).
  assert tagging.d_prime(0.5) == pytest.approx(0.0)
  assert tagging.d_prime(stats.norm.cdf(1.0)) == pytest.approx(np.sqrt(2))
  scores, targets = _scores_with_ties(3)
  targets[:, 2] = 0  # No positive: no AP, no AUC.
  targets[:, 4] = 1  # No negative: no AUC.
  result = tagging.tagging_metrics(scores, targets, class_names=list('abcdefg'))
  assert result['num_classes_unscored'] == 2 and result['unscored'] == ['c', 'e']
  kept = [0, 1, 3, 5, 6]
  assert result['mAP'] == pytest.approx(100 * sk_metrics.average_precision_score(
      targets[:, kept], scores[:, kept], average='macro'))
  assert result['AP'][2] is None
  with pytest.raises(ValueError, match='must be'):
    tagging.tagging_metrics(scores[:, :3], targets)


def test_mlp_learns_a_separable_multi_label_problem_above_chance():
  """Labels that are thresholds of a random projection: no linear map separates their XOR
  class; the MLP on 8 devices learns them all well above chance (AUC 0.5, mAP the class
  prior)."""
  rng = np.random.default_rng(0)
  dim, n = 16, 512
  x = rng.normal(size=(2 * n, dim)).astype(np.float32) * 3 + 5  # Not standardised.
  z = (x - 5) @ rng.normal(size=(dim, 3))
  targets = np.stack([z[:, 0] > 0, z[:, 1] > 0, (z[:, 0] > 0) ^ (z[:, 1] > 0), z[:, 2] > 1],
                     axis=1).astype(np.float32)
  clips = x[:, None] + rng.normal(0, 0.1, (2 * n, 2, dim)).astype(np.float32)  # 2 clips each.
  mesh = sharding.make_mesh()
  assert mesh.devices.size == 8
  scores, info = jax_mlp.mlp_probe(clips[:n], targets[:n], clips[n:], hidden=(64,), epochs=30,
                                   batch_videos=60, learning_rate=3e-3, mesh=mesh)
  assert info['batch_videos'] == 64 and info['devices'] == 8  # Rounded up to the devices.
  assert info['epoch_loss'][-1] < info['epoch_loss'][0] / 2
  result = tagging.tagging_metrics(scores, targets[n:])
  prior = 100 * targets[n:].mean()
  assert result['AUC'] > 90 and result['mAP'] > prior + 30, (result, prior)
  # The XOR class too, which no linear classifier (no hidden layer) learns.
  assert tagging.roc_auc(scores[:, 2], targets[n:, 2]) > 0.7
  linear, _ = jax_mlp.mlp_probe(clips[:n], targets[:n], clips[n:], hidden=(), epochs=30,
                                batch_videos=64, learning_rate=3e-3, mesh=mesh)
  assert tagging.roc_auc(linear[:, 2], targets[n:, 2]) < 0.6


# A multi-label AudioSet tree through the recipe, the converter and the benchmark -------------

# Rows 0-4 of class_labels_indices.csv as published (display names with commas, quoted).
CLASSES = [('/m/09x0r', 'Speech'), ('/m/05zppz', 'Male speech, man speaking'),
           ('/m/02zsn', 'Female speech, woman speaking'),
           ('/m/0ytgt', 'Child speech, kid speaking'),
           ('/m/01h8n0', 'Conversation')]
# (YTID, start, mids): every segment but one has several labels; each class is positive and
# negative in both lists. The eval list holds one segment with no file (skipped by the recipe).
TRAIN = [(f'train{i:03d}', 10 * i, mids) for i, mids in enumerate(
    [(0, 1), (0, 2), (1, 3, 4), (2, 4), (0, 3), (1, 2, 3, 4), (3,), (0, 4)])]
EVAL = [('evalA', 30, (0, 1, 2)), ('evalB', 0, (3, 4)), ('evalC', 20, (1, 4)),
        ('evalD', 40, (0, 2, 3)), ('gone', 0, (0,))]


def _segments_csv(path, segments):
  """A segment list in Google's format: 3 comment lines, `YTID, start, end, "mid,mid"`."""
  with open(path, 'w') as f:
    f.write('# Segments csv created Sun Mar  5 10:54:31 2017\n')
    f.write(f'# num_ytids={len(segments)}, num_segs={len(segments)}, num_unique_labels=5, '
            f'num_positive_labels={sum(len(m) for _, _, m in segments)}\n')
    f.write('# YTID, start_seconds, end_seconds, positive_labels\n')
    for ytid, start, mids in segments:
      labels = ','.join(CLASSES[m][0] for m in mids)
      f.write(f'{ytid}, {start:.3f}, {start + 10:.3f}, "{labels}"\n')


def audioset_tree(root):
  """Google's files (segment lists, class_labels_indices.csv, ontology.json) and a wav per
  segment cut to it (`<YTID>_<start:06d>_<end:06d>.wav`), at two sample rates."""
  os.makedirs(os.path.join(root, 'videos'))
  with open(os.path.join(root, 'class_labels_indices.csv'), 'w', newline='') as f:
    f.write('index,mid,display_name\n')
    for i, (mid, name) in enumerate(CLASSES):
      f.write(f'{i},{mid},"{name}"\n')
  with open(os.path.join(root, 'ontology.json'), 'w') as f:  # As published, 2 fields shown.
    json.dump([{'id': mid, 'name': name, 'child_ids': []} for mid, name in CLASSES], f)
  _segments_csv(os.path.join(root, 'balanced_train_segments.csv'), TRAIN)
  _segments_csv(os.path.join(root, 'eval_segments.csv'), EVAL)
  for i, (ytid, start, _) in enumerate(TRAIN + EVAL[:-1]):
    media_files.write_wav(os.path.join(root, 'videos', f'{ytid}_{start:06d}_{start + 10:06d}.wav'),
                          rate=16000 if i % 2 else 22050)


def _recipe_and_converter(root, out):
  """The documented steps: the recipe's command line per list, then the converter (its
  functions, as its command line calls them) into the same directory."""
  spec = importlib.util.spec_from_file_location(
      'audioset_recipe', os.path.join(ROOT, 'data', 'audioset', 'recipe.py'))
  recipe = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(recipe)
  videos = os.path.join(root, 'videos')
  for name, segments in (('train', 'balanced_train_segments.csv'), ('eval', 'eval_segments.csv')):
    recipe.main(['--segments', os.path.join(root, segments),
                 '--class_labels', os.path.join(root, 'class_labels_indices.csv'),
                 '--video_root', videos, '--output_dir', out, '--name', name])
    specs, rejected = clip_lists.read_csv(os.path.join(out, f'{name}.csv'), videos)
    assert not rejected
    convert.convert(specs, out, name=name, num_shards=2, short_side=32, sample_rate=16000,
                    progress=False, write_report=True)


def _multi_hot(segments):
  out = np.zeros((len(segments), len(CLASSES)), np.float32)
  for i, (_, _, mids) in enumerate(segments):
    out[i, list(mids)] = 1
  return out


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('audioset'))
  audioset_tree(root)
  out = os.path.join(root, 'shards')
  _recipe_and_converter(root, out)
  return out


def _by_name(data_dir, split):
  """{video/filename: label ids} of every record of `split`."""
  out = {}
  for path in tf.io.gfile.glob(os.path.join(data_dir, f'{split}-*-of-*')):
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
      c = tf.train.SequenceExample.FromString(record).context.feature
      out[c[fmt.FILENAME].bytes_list.value[0].decode()] = list(c[fmt.LABEL_INDEX].int64_list.value)
  return out


@pytest.mark.slow
def test_every_label_of_a_segment_survives_recipe_converter_and_benchmark(converted):
  names = [name for _, name in CLASSES]
  bench = benchmarks.get('audioset')
  assert (bench.kind, bench.modality, bench.protocols) == ('linear', 'audio', ('mlp',))
  prepared = bench.prepare(converted)['eval']
  assert prepared.class_names == tuple(names)  # labels.txt: class_labels_indices' order.
  assert (prepared.train.num_clips, prepared.test.num_clips) == (len(TRAIN), len(EVAL) - 1)
  assert prepared.fps == 10.0 and prepared.source == 'shards'
  # The records: every label id, in the list's order.
  expected = {f'{y}_{s:06d}_{s + 10:06d}.wav': list(m) for y, s, m in TRAIN}
  assert _by_name(converted, 'train') == expected
  # The reader the evaluation uses: multi-hot over the classes, all labels.
  for side, segments in ((prepared.train, TRAIN), (prepared.test, EVAL[:-1])):
    labels = evaluate_inputs.record_labels(converted, side.split, len(names))
    read = sorted(map(tuple, labels.astype(int).tolist()))
    assert read == sorted(map(tuple, _multi_hot(segments).astype(int).tolist()))
  with pytest.raises(FileNotFoundError, match='eval.report.json'):
    os.rename(os.path.join(converted, 'eval.report.json'), converted + '.report')
    try:
      bench.prepare(converted)
    finally:
      os.rename(converted + '.report', os.path.join(converted, 'eval.report.json'))


@pytest.fixture(scope='module')
def workdir(data_dir, tmp_path_factory):
  """A workdir with config.json and a freshly initialised checkpoint at step 2 (no training:
  the MLP protocol is what is measured)."""
  config = conftest.small_config(data_dir)
  return config, conftest.initialised_run(config, str(tmp_path_factory.mktemp('run')), 2)


@pytest.mark.slow
def test_the_evaluation_measures_the_mlp_on_every_label(converted, workdir):
  config, workdir = copy.deepcopy(workdir[0]), workdir[1]
  block = config.eval.audioset
  block.test_clips, block.mlp_epochs, block.mlp_batch_videos = 2, 3, 4
  block.mlp_hidden = (16,)
  bench = benchmarks.get('audioset')
  prepared = evaluate.prepare_splits(bench, config, converted)
  record = evaluate.evaluate_step(config, bench, prepared, workdir, 2, progress=False)
  result = record['splits']['eval']
  assert set(record['metrics']) == {'mlp_mAP', 'mlp_AUC', 'mlp_d_prime'}
  assert result['mlp_num_train_videos'] == len(TRAIN)
  assert result['mlp_num_test_videos'] == len(EVAL) - 1
  assert result['mlp_num_train_labels'] == sum(len(m) for _, _, m in TRAIN)
  assert result['mlp_num_test_labels'] == sum(len(m) for _, _, m in EVAL[:-1])
  assert result['mlp_num_classes_scored'] == len(CLASSES)
  assert result['mlp_d_prime'] == pytest.approx(
      np.sqrt(2) * stats.norm.ppf(result['mlp_AUC'] / 100))
  assert result['mlp_steps'] == 3 * 1  # 8 devices: a batch of 8 videos, 1 step an epoch.
  protocol = record['protocol']
  assert protocol['mlp']['labels'] == 'every label of a clip (multi-hot)'
  assert protocol['mlp']['classifier'].startswith('standardised features → MLP, hidden [16]')
  assert protocol['published'] is False and protocol['modality'] == 'audio'
  assert protocol['videos_read']['eval']['linear_test'] == len(EVAL) - 1
  assert json.loads(json.dumps(record)) == record
  markdown = report.render_markdown(record)
  assert f'| mlp_mAP | {record["metrics"]["mlp_mAP"]:.2f} |' in markdown


def test_protocol_blocks_of_the_new_benchmarks_check_and_record():
  from configs import tiny  # pylint: disable=g-import-not-at-top
  from mmv import evaluate_protocol  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  for name in ('audioset', 'moments_in_time'):
    evaluate_protocol.check_eval_config(config, benchmarks.get(name))
  bench = benchmarks.get('audioset')
  settings = evaluate_protocol.protocol_settings(config, bench, ['eval'])
  assert settings['mlp']['classifier'].startswith('standardised features → MLP, hidden [512]')
  assert settings['clip_seconds'] == pytest.approx(3.2)
  assert 'differs_from_published' not in settings  # No published protocol to differ from.
  assert json.loads(json.dumps(settings)) == settings
  mit = evaluate_protocol.protocol_settings(config, benchmarks.get('moments_in_time'),
                                            ['validation'])
  assert mit['linear']['classifier'].endswith('JAX Adam')
  assert mit['max_seconds'] == 'whole videos'
  typo = copy.deepcopy(config)
  typo.eval.audioset.mlp_hiden = (8,)  # (Unlocked here; the binary's --config is locked.)
  with pytest.raises(ValueError, match='must have the fields'):
    evaluate_protocol.check_eval_config(typo, bench)
  config.eval.audioset.mlp_dropout = 1.0
  with pytest.raises(ValueError, match='mlp_dropout in'):
    evaluate_protocol.check_eval_config(config, bench)
