"""The evaluation binary's parts: sharded feature extraction and its cache, the per-benchmark
data config, watching a run's checkpoints, and whole evaluations of real benchmark layouts."""

import csv
import json
import os
import shutil

import jax
import numpy as np
import pytest
import tensorflow as tf

from mmv import benchmarks
from mmv import evaluate
from mmv import sharding
from mmv import train
from mmv.data import format as fmt
from mmv.data import records
from mmv.evaluators import features as features_lib
from tests import conftest
from tests import media_files


@pytest.fixture(scope='module')
def run(data_dir, tmp_path_factory):
  """(config, workdir) of a tiny run trained for 2 steps, its checkpoint at step 2."""
  config = conftest.small_config(data_dir)
  config.train.steps = 2
  workdir = str(tmp_path_factory.mktemp('run'))
  train.train(config, workdir)
  return config, workdir


def _labels_in_file_order(data_dir, split):
  """Labels of every record of `split` in the order evaluation reads them: the shards (at
  most 8 here) interleaved record by record."""
  per_file = []
  for path in records.split_files(data_dir, split):
    per_file.append([
        tf.train.SequenceExample.FromString(r).context.feature[fmt.LABEL_INDEX].int64_list.value[0]
        for r in tf.data.TFRecordDataset(path).as_numpy_iterator()])
  assert len(per_file) <= 8
  out = []
  for i in range(max(len(f) for f in per_file)):
    out.extend(f[i] for f in per_file if i < len(f))
  return np.array(out)


def test_sharded_features_equal_single_device_and_keep_every_video_once(config, tmp_path):
  model = train.create_model(config)
  mesh = sharding.make_mesh()
  assert mesh.devices.size == 8
  state = train.create_train_state(config, model, train.create_optimizer(config), mesh)
  bench = benchmarks.get('synthetic')
  prepared = bench.prepare(config.data.data_dir)['test']
  data = evaluate.benchmark_data_config(config, bench, prepared)
  data.num_test_clips = 3
  data.modalities = ('video', 'text')
  embed = features_lib.make_embed_fn(model, 'video', with_text=True)
  # 32 test videos in batches of 24: the second batch is 8 videos and 16 padding rows.
  sharded, skipped = features_lib.extract(data, 'test', embed, state.variables(), mesh,
                                          batch_size=24)
  one = jax.sharding.Mesh(np.array(jax.devices()[:1]).reshape(1, 1), mesh.axis_names)
  variables = jax.device_put(state.variables(), jax.devices()[0])
  single, _ = features_lib.extract(data, 'test', embed, variables, one, batch_size=24)

  assert skipped == 0
  np.testing.assert_array_equal(sharded['label'], _labels_in_file_order(data.data_dir, 'test'))
  assert sharded['features'].shape[:2] == sharded['video'].shape[:2] == (32, 3)
  assert sharded['text'].shape == (32, config.model.vat_dim) and sharded['has_text'].all()
  for k in features_lib.ARRAYS:
    np.testing.assert_allclose(sharded[k], single[k], rtol=1e-5, atol=1e-5, err_msg=k)
  # The three clips of a video are different clips.
  assert not np.allclose(sharded['features'][:, 0], sharded['features'][:, 1])

  with pytest.raises(ValueError, match='eval.batch_size'):
    features_lib.extract(data, 'test', embed, state.variables(), mesh, batch_size=12)

  # The cache: the same settings load what was computed; other settings compute again.
  calls = []

  def embed_fn():
    calls.append(1)
    return embed, state.variables(), mesh

  directory = str(tmp_path / 'cache')
  kw = dict(step=7, modality='video', with_text=True, batch_size=24)
  first, _, cached = features_lib.cached_extract(directory, data, 'test', embed_fn, **kw)
  assert not cached and len(calls) == 1
  again, skipped, cached = features_lib.cached_extract(directory, data, 'test', embed_fn, **kw)
  assert cached and len(calls) == 1 and skipped == 0
  for k in features_lib.ARRAYS:
    np.testing.assert_array_equal(first[k], again[k])
  data.num_test_clips = 1
  other, _, cached = features_lib.cached_extract(directory, data, 'test', embed_fn, **kw)
  assert not cached and len(calls) == 2 and other['features'].shape[1] == 1


def test_augmented_passes_differ_and_read_every_video(config):
  model = train.create_model(config)
  mesh = sharding.make_mesh()
  state = train.create_train_state(config, model, train.create_optimizer(config), mesh)
  bench = benchmarks.get('synthetic')
  data = evaluate.benchmark_data_config(config, bench, bench.prepare(config.data.data_dir)['test'])
  embed = features_lib.make_embed_fn(model, 'video', with_text=False)
  passes = [features_lib.extract(data, 'train', embed, state.variables(), mesh, batch_size=16,
                                 augment_seed=seed)[0] for seed in (0, 1, 0)]
  np.testing.assert_array_equal(passes[0]['label'],
                                _labels_in_file_order(data.data_dir, 'train'))
  assert passes[0]['features'].shape[:2] == (64, 1)
  assert not np.allclose(passes[0]['features'], passes[1]['features'])  # Other crops, offsets.
  np.testing.assert_allclose(passes[0]['features'], passes[2]['features'], rtol=1e-6)


def test_benchmark_data_config(config):
  config.data.data_dir = os.path.relpath(config.data.data_dir)
  prepared = benchmarks.Prepared(benchmark='msrvtt', split='1k-A', data_dir='/b', train=None,
                                 test=None, class_names=(), source='raw', fps=25.0)
  data = evaluate.benchmark_data_config(config, benchmarks.get('msrvtt'), prepared)
  assert data.data_dir == '/b' and data.fps == 25.0 and data.modalities == ('video',)
  assert data.vocab == os.path.abspath(os.path.join(config.data.data_dir, 'vocab.txt'))
  # Tiny trains on 8 frames at stride 2 from 10 fps (1.6 s): stride 5 from 25 fps.
  assert data.frame_stride == 5 and data.num_frames == config.data.num_frames
  esc = evaluate.benchmark_data_config(config, benchmarks.get('esc50'),
                                       prepared.__class__(**{**prepared.__dict__, 'fps': 10.0}))
  assert esc.modalities == ('audio',) and esc.frame_stride == 2
  config.data.data_dir = '/nowhere'
  with pytest.raises(FileNotFoundError, match='training vocabulary'):
    evaluate.benchmark_data_config(config, benchmarks.get('msrvtt'), prepared)


def test_eval_config_errors_and_the_run_config(run):
  config, workdir = run
  saved = evaluate.read_run_config(workdir)
  assert saved.eval.linear_c == config.eval.linear_c == (1.0,)  # Tuples again, not lists.
  assert saved.to_dict() == config.to_dict()
  with pytest.raises(AttributeError):
    saved.eval.linear_cc = 1.0  # Locked: a typo is an error.
  with pytest.raises(FileNotFoundError, match='config.json'):
    evaluate.read_run_config(os.path.dirname(workdir))
  for field, value, match in (('linear_solver', 'sgd', 'linear_solver'),
                              ('linear_train_passes', 0, 'linear_train_passes'),
                              ('linear_c', (0.0,), 'linear_c')):
    bad = conftest.small_config(config.data.data_dir)
    bad.eval[field] = value
    with pytest.raises(ValueError, match=match):
      evaluate.check_eval_config(bad)


def test_watch_evaluates_each_checkpoint_once_in_order_until_the_final_one(run, tmp_path):
  config, source = run
  workdir = str(tmp_path / 'run')
  shutil.copytree(source, workdir)  # Checkpoint 2 of 4 is there; 4 is written while watching.
  longer = conftest.small_config(config.data.data_dir)
  longer.train.steps = 4
  bench = benchmarks.get('synthetic')
  prepared = bench.prepare(config.data.data_dir)
  evaluated, sleeps = [], []

  def evaluate_step(step):
    record = evaluate.evaluate_step(longer, bench, prepared, workdir, step, progress=False)
    evaluated.append(record)

  def sleep(seconds):
    sleeps.append(seconds)
    if len(sleeps) == 1:
      train.train(longer, workdir)  # Resumes at 2, writes checkpoint 4.
    assert len(sleeps) < 3, 'the watch did not see the final checkpoint'

  steps = evaluate.watch(evaluate_step, 4, workdir, done=(), poll_seconds=5, sleep=sleep)
  assert steps == [2, 4] and [r['step'] for r in evaluated] == [2, 4]
  assert sleeps == [5]  # Waited once, for step 4; stopped after it without waiting again.
  assert evaluated[0]['metrics'] != evaluated[1]['metrics']  # Other weights, other numbers.
  assert os.path.isdir(os.path.join(workdir, 'eval', 'synthetic', 'features', 'step_4'))
  # Already evaluated steps are not evaluated again; nothing new and a timeout: it stops.
  clock = iter(range(0, 100, 10))
  assert evaluate.watch(evaluate_step, 6, workdir, done=[2, 4], poll_seconds=1, timeout=15,
                        sleep=lambda s: None, clock=lambda: next(clock)) == []
  assert len(evaluated) == 2


def _esc50_tree(root):
  rows = ['filename,fold,target,category,esc10,src_file,take']
  os.makedirs(os.path.join(root, 'audio'))
  for fold in range(1, 6):
    for target, category in enumerate(('dog', 'rooster')):
      name = f'{fold}-{100 + target}-A-{target}.wav'
      rows.append(f'{name},{fold},{target},{category},False,{100 + target},A')
      media_files.write_wav(os.path.join(root, 'audio', name), rate=16000 if target else 22050)
  os.makedirs(os.path.join(root, 'meta'))
  with open(os.path.join(root, 'meta', 'esc50.csv'), 'w') as f:
    f.write('\n'.join(rows) + '\n')


def _msrvtt_tree(root):
  os.makedirs(os.path.join(root, 'videos', 'all'))
  sentences = ['a man is singing', 'cars race on a track', 'a cat sleeps', 'lost']
  with open(os.path.join(root, 'MSRVTT_JSFUSION_test.csv'), 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['', 'key', 'vid_key', 'video_id', 'sentence'])
    for i, sentence in enumerate(sentences):
      writer.writerow([i, f'ret{i}', f'msr{i}', f'video{i}', sentence])
      if sentence != 'lost':  # Listed, not on disk: skipped and counted.
        media_files.write_video(os.path.join(root, 'videos', 'all', f'video{i}.mp4'),
                                video_codec='mpeg4', audio_codec='aac' if i else None)


def test_real_layouts_through_the_evaluation(run, tmp_path):
  """ESC-50 (audio features, 5 folds, linear) and MSRVTT (video at 25 fps, retrieval)."""
  config, workdir = run
  options = dict(short_side=32, sample_rate=16000, num_workers=1, progress=False)
  esc_root, msrvtt_root = str(tmp_path / 'esc50'), str(tmp_path / 'msrvtt')
  _esc50_tree(esc_root)
  _msrvtt_tree(msrvtt_root)

  esc = benchmarks.get('esc50')
  record = evaluate.evaluate_step(config, esc, esc.prepare(esc_root, **options), workdir, 2,
                                  progress=False)
  assert record['protocol']['splits'] == ['1', '2', '3', '4', '5']
  assert record['protocol']['modality'] == 'audio'
  assert record['protocol']['features'] == config.model.audio_backbone
  for fold, result in record['splits'].items():
    assert result['linear_num_train_videos'] == 8 and result['linear_num_test_videos'] == 2
    assert record['protocol']['videos_read'][fold]['train_pass1'] == 8
  assert record['metrics']['linear_top1'] == pytest.approx(
      np.mean([r['linear_top1'] for r in record['splits'].values()]))
  assert set(record['metrics']) == {'linear_top1', 'linear_top5'}

  msrvtt = benchmarks.get('msrvtt')
  prepared = msrvtt.prepare(msrvtt_root, **options)
  record = evaluate.evaluate_step(config, msrvtt, prepared, workdir, 2, progress=False)
  result = record['splits']['1k-A']
  assert result['retrieval_num_queries'] == 3 and result['retrieval_num_videos'] == 3
  assert record['protocol']['prepared']['1k-A']['test_skipped'] == 1
  assert record['protocol']['frame_stride'] == 5 and record['protocol']['fps'] == 25.0
  assert 1 <= record['metrics']['t2v_MedR'] <= 3 and 1 <= record['metrics']['v2t_MedR'] <= 3
  assert os.path.exists(os.path.join(workdir, 'eval', 'msrvtt', 'features', 'step_2', '1k-A',
                                     'retrieval_test', 'meta.json'))
  assert json.loads(json.dumps(record)) == record


def test_watch_passes_over_a_checkpoint_removed_before_its_turn(monkeypatch):
  on_disk = [2, 4]
  monkeypatch.setattr(evaluate, 'checkpoint_steps', lambda workdir: list(on_disk))
  evaluated = []

  def evaluate_step(step):
    if step == 2:
      on_disk.remove(2)  # max_to_keep removed it while the evaluator was busy.
      raise FileNotFoundError('no checkpoint of step 2')
    evaluated.append(step)

  assert evaluate.watch(evaluate_step, 4, 'w', done=(), poll_seconds=1) == [4]
  assert evaluated == [4]

  def missing_vocabulary(step):
    raise FileNotFoundError('vocab.txt')

  with pytest.raises(FileNotFoundError, match='vocab'):  # Not a removed checkpoint: an error.
    evaluate.watch(missing_vocabulary, 4, 'w', done=(), poll_seconds=1)
