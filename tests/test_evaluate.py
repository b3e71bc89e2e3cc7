"""The evaluation binary's parts: sharded feature extraction and its cache, the per-benchmark
protocols and data config, restoring the model alone, watching a run's checkpoints, and whole
evaluations of real benchmark layouts."""

import copy
import csv
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow as tf

from configs import common as configs_common
from mmv import benchmarks
from mmv import checkpoint as ckpt_lib
from mmv import evaluate
from mmv import evaluate_inputs
from mmv import evaluate_protocol
from mmv import inference
from mmv import sharding
from mmv import train
from mmv import train_step
from mmv.data import format as fmt
from mmv.data import records
from mmv.evaluators import features as features_lib
from mmv.evaluators import report
from tests import conftest
from tests import media_files

# Launches processes, converts media or trains: not in `make test-fast`.
pytestmark = pytest.mark.slow


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


@pytest.fixture(scope='module')
def initialised(data_dir):
  """(config, model, mesh, train state) of `small_config`, freshly initialised on 8 devices:
  made once for the tests of feature extraction."""
  config = conftest.small_config(data_dir)
  model = train_step.create_model(config)
  mesh = sharding.make_mesh()
  state = train_step.create_train_state(config, model, train_step.create_optimizer(config), mesh)
  return config, model, mesh, state


def test_sharded_features_equal_single_device_and_keep_every_video_once(initialised, tmp_path):
  config, model, mesh, state = initialised
  assert mesh.devices.size == 8
  bench = benchmarks.get('synthetic')
  prepared = bench.prepare(config.data.data_dir)['test']
  data = evaluate_protocol.benchmark_data_config(config, bench, prepared)
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
  # What evaluation uses, and only that (mmv.inference asks for the S_va embeddings too).
  assert set(sharded) == {'features', 'video', 'text', 'has_text', 'label'}
  for k in sharded:
    np.testing.assert_allclose(sharded[k], single[k], rtol=1e-5, atol=1e-5, err_msg=k)
  # The three clips of a video are different clips.
  assert not np.allclose(sharded['features'][:, 0], sharded['features'][:, 1])

  with pytest.raises(ValueError, match=r'clips per batch \(videos x clips\)=36 is not '):
    features_lib.extract(data, 'test', embed, state.variables(), mesh, batch_size=12)

  # The cache: the same settings load what was computed; other settings compute again.
  calls = []

  def embed_fn():
    calls.append(1)
    return embed, state.variables(), mesh

  directory = str(tmp_path / 'cache')
  kw = dict(step=7, key={'model': 'a'}, modality='video', with_text=True, batch_clips=72,
            num_videos=32)
  first, _, cached = features_lib.cached_extract(directory, data, 'test', embed_fn, **kw)
  assert not cached and len(calls) == 1
  again, skipped, cached = features_lib.cached_extract(directory, data, 'test', embed_fn, **kw)
  assert cached and len(calls) == 1 and skipped == 0
  assert set(first) == set(again)
  for k in first:
    np.testing.assert_array_equal(first[k], again[k])
  _, _, cached = features_lib.cached_extract(directory, data, 'test', embed_fn,
                                             **{**kw, 'key': {'model': 'b'}})
  assert not cached and len(calls) == 2  # Another key (model, checkpoint, protocol, dtype).
  data.num_test_clips = 1
  other, _, cached = features_lib.cached_extract(directory, data, 'test', embed_fn, **kw)
  assert not cached and len(calls) == 3 and other['features'].shape[1] == 1


def test_augmented_passes_differ_and_read_every_video(initialised):
  config, model, mesh, state = initialised
  bench = benchmarks.get('synthetic')
  data = evaluate_protocol.benchmark_data_config(config, bench,
                                                 bench.prepare(config.data.data_dir)['test'])
  embed = features_lib.make_embed_fn(model, 'video', with_text=False)
  passes = [features_lib.extract(data, 'train', embed, state.variables(), mesh, batch_size=16,
                                 augment_seed=seed)[0] for seed in (0, 1, 0)]
  np.testing.assert_array_equal(passes[0]['label'],
                                _labels_in_file_order(data.data_dir, 'train'))
  assert passes[0]['features'].shape[:2] == (64, 1)
  assert not np.allclose(passes[0]['features'], passes[1]['features'])  # Other crops, offsets.
  np.testing.assert_allclose(passes[0]['features'], passes[2]['features'], rtol=1e-6)


def test_a_class_caption_of_stop_words_only_is_an_error(config):
  bench = benchmarks.get('synthetic')
  data = evaluate_protocol.benchmark_data_config(config, bench,
                                                 bench.prepare(config.data.data_dir)['test'])
  assert 'the' in data.stop_words
  tokens = evaluate_inputs.caption_tokens(data, ['red square', 'the square'])
  assert (tokens != 0).any(axis=1).all()
  with pytest.raises(ValueError, match=r"no word left .*\['the'\]"):
    evaluate_inputs.caption_tokens(data, ['red square', 'the'])


def test_benchmark_data_config_is_the_protocol_not_the_training_augmentation(config):
  config.data.data_dir = os.path.relpath(config.data.data_dir)
  config.data.color_augment = config.data.random_flip = True  # Training augmentation.
  config.data.scale_jitter, config.data.min_resize = (0.5, 2.0), 300
  prepared = benchmarks.Prepared(benchmark='msrvtt', split='1k-A', data_dir='/b', train=None,
                                 test=None, class_names=(), source='raw', fps=25.0)
  data = evaluate_protocol.benchmark_data_config(config, benchmarks.get('msrvtt'), prepared)
  assert data.data_dir == '/b' and data.modalities == ('video',)
  assert data.vocab == os.path.abspath(os.path.join(config.data.data_dir, 'vocab.txt'))
  # The paper's retrieval clips: 32 frames at stride 2 from 25 fps, 224 central crop.
  assert (data.fps, data.frame_stride, data.num_frames) == (25.0, 2, 32)
  assert (data.min_resize, data.crop_size) == (224, 224)
  assert not data.color_augment and not data.random_flip and data.scale_jitter == (1.0, 1.0)
  ucf = evaluate_protocol.benchmark_data_config(
      config, benchmarks.get('ucf101'),
      prepared.__class__(**{**prepared.__dict__, 'benchmark': 'ucf101', 'split': '1'}))
  assert ucf.random_flip and not ucf.color_augment and ucf.scale_jitter == (1.0, 1.0)
  esc = evaluate_protocol.benchmark_data_config(config, benchmarks.get('esc50'),
                                       prepared.__class__(**{**prepared.__dict__, 'fps': 10.0}))
  assert esc.modalities == ('audio',) and (esc.fps, esc.frame_stride, esc.num_frames) == (
      10.0, 1, 32)
  evaluate_protocol.check_prepared(config, benchmarks.get('msrvtt'), prepared)
  with pytest.raises(ValueError, match='stored at 10.0 fps.*eval.msrvtt.fps is 25.0'):
    evaluate_protocol.check_prepared(config, benchmarks.get('msrvtt'),
                                     prepared.__class__(**{**prepared.__dict__, 'fps': 10.0}))
  config.data.data_dir = '/nowhere'
  with pytest.raises(FileNotFoundError, match='training vocabulary'):
    evaluate_protocol.benchmark_data_config(config, benchmarks.get('msrvtt'), prepared)


def test_eval_config_errors_and_the_run_config(run, tmp_path):
  config, workdir = run
  saved = inference.read_run_config(workdir)
  assert saved.eval.synthetic.c == config.eval.synthetic.c == (1.0,)  # Tuples, not lists.
  assert saved.to_dict() == config.to_dict()
  with pytest.raises(AttributeError):
    saved.eval.ucf101.train_pases = 1  # Locked: a typo is an error.
  with pytest.raises(FileNotFoundError, match='config.json'):
    inference.read_run_config(os.path.dirname(workdir))
  # A run of an earlier version stored one flat `eval` section: it is evaluated with today's
  # per-benchmark defaults, the rest of its config as it was.
  older = tmp_path / 'older'
  older.mkdir()
  stored = json.loads(json.dumps(config.to_dict()))
  stored['eval'] = {'batch_size': 16, 'linear_c': [1.0], 'linear_solver': 'svm',
                    'retrieval_clips': 4, 'zero_shot_template': '{}'}
  (older / 'config.json').write_text(json.dumps(stored))
  old = inference.read_run_config(str(older))
  assert old.eval.ucf101.c == (1e-3,) and old.eval.ucf101.fps == 25.0
  assert old.eval.dtype == 'float32' and 'linear_c' not in old.eval
  assert old.model.to_dict() == config.model.to_dict()
  evaluate_protocol.check_eval_config(old, benchmarks.get('synthetic'))
  # Per-benchmark blocks written before fields were added: those get their defaults.
  stored = json.loads(json.dumps(config.to_dict()))
  for block in stored['eval'].values():
    for field in ('max_seconds', 'clip_offsets', 'svm_solver', 'svm_max_iter'):
      if isinstance(block, dict):
        block.pop(field, None)
  stored['eval']['ucf101']['c'] = [0.01]
  (older / 'config.json').write_text(json.dumps(stored))
  old, added = evaluate_protocol.with_new_fields(inference.read_run_config(str(older)))
  assert 'eval.ucf101.max_seconds' in added and 'eval.msrvtt.clip_offsets' in added
  assert (old.eval.ucf101.max_seconds, old.eval.ucf101.clip_offsets) == (20.0, 'dmvr')
  assert old.eval.ucf101.c == (0.01,)  # What the run set stays.
  with pytest.raises(AttributeError):
    old.eval.ucf101.train_pases = 1  # Still locked.
  ucf = benchmarks.get('ucf101')
  evaluate_protocol.check_eval_config(old, ucf)
  for field, value, match in (('classifier', 'sgd', 'classifier'),
                              ('svm_solver', 'lbfgs', 'svm_solver'),
                              ('clip_offsets', 'random', 'clip_offsets'),
                              ('max_seconds', -1.0, 'max_seconds'),
                              ('train_passes', 0, 'train_passes'),
                              ('c', (0.0,), r'eval.ucf101.c'),
                              ('splits', ('4',), 'splits'),
                              ('train_scale_jitter', (1.2, 0.8), 'train_scale_jitter')):
    bad = conftest.small_config(config.data.data_dir)
    bad.eval.ucf101[field] = value
    with pytest.raises(ValueError, match=match):
      evaluate_protocol.check_eval_config(bad, ucf)
  bad = conftest.small_config(config.data.data_dir)
  bad.eval.dtype = 'float16'
  with pytest.raises(ValueError, match='eval.dtype'):
    evaluate_protocol.check_eval_config(bad, ucf)
  bad.eval.msrvtt.c = (1.0,)  # A field retrieval does not have.
  with pytest.raises(ValueError, match='eval.msrvtt must have the fields'):
    evaluate_protocol.check_eval_config(bad, benchmarks.get('msrvtt'))
  del bad.eval['esc50']  # A config of an older version.
  with pytest.raises(ValueError, match='no protocol block eval.esc50'):
    evaluate_protocol.check_eval_config(bad, benchmarks.get('esc50'))


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

  config = copy.deepcopy(config)
  config.eval.esc50.train_passes = config.eval.esc50.test_clips = 2
  # Short clips for the CPU (test_ucf101_... feeds the published clips).
  msrvtt_block = config.eval.msrvtt
  msrvtt_block.retrieval_clips, msrvtt_block.num_frames = 2, 8
  msrvtt_block.min_resize, msrvtt_block.crop_size = 0, 32
  esc = benchmarks.get('esc50')
  record = evaluate.evaluate_step(
      config, esc, evaluate.prepare_splits(esc, config, esc_root, **options), workdir, 2,
      progress=False)
  assert record['protocol']['splits'] == ['1', '2', '3', '4', '5']
  assert record['protocol']['modality'] == 'audio'
  assert record['protocol']['linear']['features'] == (
      f'pooled output of {config.model.audio_backbone}')
  assert record['protocol']['linear']['C'] == 1e-3
  for fold, result in record['splits'].items():
    assert result['linear_num_train_videos'] == 8 and result['linear_num_test_videos'] == 2
    assert record['protocol']['videos_read'][fold]['train_pass1'] == 8
  assert record['metrics']['linear_top1'] == pytest.approx(
      np.mean([r['linear_top1'] for r in record['splits'].values()]))
  assert set(record['metrics']) == {'linear_top1', 'linear_top5'}

  msrvtt = benchmarks.get('msrvtt')
  prepared = evaluate.prepare_splits(msrvtt, config, msrvtt_root, **options)
  record = evaluate.evaluate_step(config, msrvtt, prepared, workdir, 2, progress=False)
  result = record['splits']['1k-A']
  assert result['retrieval_num_queries'] == 3 and result['retrieval_num_videos'] == 3
  assert record['protocol']['prepared']['1k-A']['test_skipped'] == 1
  assert record['protocol']['frame_stride'] == 2 and record['protocol']['fps'] == 25.0
  assert record['protocol']['retrieval']['clips'] == 2 and record['protocol']['crop'] == 32
  assert record['protocol']['differs_from_published'] == [
      'crop_size', 'min_resize', 'num_frames', 'retrieval_clips']
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


def _ucf101_tree(root):
  """A UCF101 layout of 2 classes x 3 groups (split k tests on group k), one small AVI copied
  under every name: 1.6 s at 25 fps, frame k a flat grey of level media_files.grey(k)."""
  classes = ('ApplyEyeMakeup', 'Archery')
  lists = os.path.join(root, 'ucfTrainTestlist')
  os.makedirs(lists)
  with open(os.path.join(lists, 'classInd.txt'), 'w') as f:
    f.write(''.join(f'{i} {c}\n' for i, c in enumerate(classes, 1)))
  source = os.path.join(root, 'source.avi')
  media_files.write_video(source, video_codec='mjpeg')
  for k in (1, 2, 3):
    with open(os.path.join(lists, f'trainlist0{k}.txt'), 'w') as f:
      f.write(''.join(f'{c}/v_{c}_g{g:02d}_c01.avi {i}\n' for i, c in enumerate(classes, 1)
                      for g in (1, 2, 3) if g != k))
    with open(os.path.join(lists, f'testlist0{k}.txt'), 'w') as f:
      f.write(''.join(f'{c}/v_{c}_g{k:02d}_c01.avi\n' for c in classes))
  for c in classes:
    os.makedirs(os.path.join(root, 'UCF-101', c))
    for g in (1, 2, 3):
      shutil.copy(source, os.path.join(root, 'UCF-101', c, f'v_{c}_g{g:02d}_c01.avi'))


@pytest.fixture
def model_inputs(monkeypatch):
  """The video batches the evaluation feeds the model: (shape, [rows, frames] grey levels of
  pixel (0, 0) in 0-255) per call."""
  seen = []
  make = features_lib.make_embed_fn

  def spying(model, modality, with_text, spaces=False):
    embed = make(model, modality, with_text, spaces)

    def spy(variables, batch):
      video = np.asarray(batch['video'])
      seen.append((video.shape, video[:, :, 0, 0, 0] * 255.0))
      return embed(variables, batch)

    return spy

  monkeypatch.setattr(features_lib, 'make_embed_fn', spying)
  return seen


def test_ucf101_is_measured_by_the_released_script_protocol(run, tmp_path, model_inputs):
  """The default UCF101 protocol: 32 frames at stride 2 from videos stored at 25 fps, resized
  and cropped to 224, C = 0.001, split 1; passes and test clips shrunk to 2 for the CPU."""
  config, workdir = run
  bench = benchmarks.get('ucf101')
  defaults = evaluate_protocol.protocol_settings(config, bench, ['1'])
  assert defaults['published'] and 'differs_from_published' not in defaults
  assert defaults['linear']['train_passes'] == 10 and defaults['linear']['test_clips'] == 10
  assert defaults['linear']['C'] == 0.001 and defaults['dtype'] == 'float32'
  assert defaults['linear']['classifier'] == (
      'StandardScaler + scikit-learn LinearSVC (solver dual, max_iter 1000)')
  assert defaults['linear']['train_clip'] == 'random offset, random crop 224, left-right flip'

  root = str(tmp_path / 'ucf')
  _ucf101_tree(root)
  config = copy.deepcopy(config)
  config.eval.ucf101.train_passes = config.eval.ucf101.test_clips = 2
  prepared = evaluate.prepare_splits(bench, config, root, short_side=0, num_workers=1,
                                     progress=False)
  assert list(prepared) == ['1'] and prepared['1'].fps == 25.0  # Split 1 only, at 25 fps.
  record = evaluate.evaluate_step(config, bench, prepared, workdir, 2, progress=False)

  p = record['protocol']
  assert p['splits'] == ['1'] and not p['published']
  assert p['differs_from_published'] == ['test_clips', 'train_passes']
  assert (p['fps'], p['frame_stride'], p['frames'], p['resize_short_side'], p['crop']) == (
      25.0, 2, 32, 224, 224)
  assert p['linear']['C'] == 0.001 and p['dtype'] == 'float32'
  assert record['splits']['1']['linear_num_train_videos'] == 4
  assert record['splits']['1']['linear_num_test_videos'] == 2
  assert record['splits']['1']['linear_C'] == 0.001
  # What the model saw: 32 frames of 224 x 224, stored frames 2 apart (grey levels 12 apart;
  # one step wraps from the end of the 40-frame video to its start).
  assert model_inputs and all(shape[1:] == (32, 224, 224, 3) for shape, _ in model_inputs)
  for _, grey in model_inputs:
    steps = np.diff(grey[np.abs(grey).sum(axis=1) > 0], axis=1)  # Padding rows are zeros.
    assert np.median(steps) == pytest.approx(2 * 6, abs=1.5)
  # The paper's S3D-G number is not shown beside a record of another protocol.
  md = report.render_markdown({**record, 'backbone': 's3d_g'})
  assert 'Not the published protocol (differs in: test_clips, train_passes)' in md
  assert '89.6' not in md


def _features_computed(monkeypatch):
  calls = []
  extract = features_lib.extract

  def counting(*args, **kwargs):
    calls.append(1)
    return extract(*args, **kwargs)

  monkeypatch.setattr(features_lib, 'extract', counting)
  return calls


def test_feature_cache_key_holds_model_checkpoint_protocol_and_dtype(run, tmp_path,
                                                                     monkeypatch):
  config, source = run
  workdir = str(tmp_path / 'run')
  shutil.copytree(source, workdir)
  bench = benchmarks.get('synthetic')
  prepared = bench.prepare(config.data.data_dir)
  key = evaluate.feature_key(config, bench, workdir, 2)
  assert key['dtype'] == 'float32' and key['model']['dtype'] == 'float32'

  def changed(change):
    other = copy.deepcopy(config)
    change(other)
    return evaluate.feature_key(other, bench, workdir, 2)

  assert changed(lambda c: setattr(c.eval, 'dtype', 'bfloat16')) != key
  assert changed(lambda c: setattr(c.model, 'video_backbone', 's3d_g')) != key
  assert changed(lambda c: setattr(c.eval.synthetic, 'crop_size', 24)) != key
  # Fitting another C reuses the features.
  assert changed(lambda c: setattr(c.eval.synthetic, 'c', (0.1,))) == key
  assert changed(lambda c: setattr(c.model, 'dtype', 'bfloat16')) == key  # eval.dtype rules.
  assert evaluate.feature_key(config, bench, source, 2) != key  # Another checkpoint.

  calls = _features_computed(monkeypatch)
  evaluate_step = lambda c: evaluate.evaluate_step(c, bench, prepared, workdir, 2,
                                                   progress=False)
  first = evaluate_step(config)
  computed = len(calls)  # 2 passes, the test clips and the retrieval clips.
  assert computed == 4
  other_c = copy.deepcopy(config)
  other_c.eval.synthetic.c = (0.1,)
  evaluate_step(other_c)
  assert len(calls) == computed  # From the cache.
  bf16 = copy.deepcopy(config)
  bf16.eval.dtype = 'bfloat16'
  record = evaluate_step(bf16)
  assert len(calls) == 2 * computed  # Computed again, in bfloat16.
  assert record['protocol']['dtype'] == 'bfloat16' and first['protocol']['dtype'] == 'float32'


@pytest.fixture(scope='module')
def fsdp_run(data_dir, tmp_path_factory):
  """(config, workdir) of a run, initialised (checkpoint 1, Adam's moments too) with its kernels
  split over mesh.fsdp = 2 as its training would save them (nothing here needs trained
  weights)."""
  config = conftest.small_config(data_dir)
  config.train.steps = config.train.checkpoint_every = 1
  config.mesh.fsdp = 2
  config.mesh.param_rules = ((r'.*kernel', 'fsdp'), ('.*', 'replicate'))
  workdir = str(tmp_path_factory.mktemp('fsdp_run'))
  return config, conftest.initialised_run(config, workdir, 1,
                                          mesh=sharding.make_mesh(config.mesh))


def test_restore_reads_the_model_alone_onto_another_mesh(fsdp_run, monkeypatch):
  config, workdir = fsdp_run
  # The reference: the whole train state, restored as training does, on the training mesh.
  model = train_step.create_model(config)
  tx = train_step.create_optimizer(config)
  train_mesh = sharding.make_mesh(config.mesh)
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), read_only=True)
  abstract = train_step.abstract_train_state(config, model, tx, train_mesh)
  state, _ = checkpointer.restore(abstract, signature=ckpt_lib.variable_signature(
      {'params': abstract.params, 'batch_stats': abstract.batch_stats}))
  checkpointer.close()
  assert jax.tree.leaves(state.opt_state)  # The checkpoint holds Adam's moments.

  restored_trees = []
  manager_restore = ocp.CheckpointManager.restore

  def spying(self, step, args=None):
    out = manager_restore(self, step, args=args)
    if 'state' in out:
      restored_trees.append(out.state)
    return out

  monkeypatch.setattr(ocp.CheckpointManager, 'restore', spying)
  monkeypatch.setattr(train_step, 'create_optimizer', None)  # No optimiser is built.
  for fsdp in (1, 4):
    other = copy.deepcopy(config)
    other.mesh.fsdp = fsdp
    (_, variables, mesh), step = inference.restore(other, workdir)
    assert step == 1 and dict(mesh.shape) == {'data': 8 // fsdp, 'fsdp': fsdp}
    assert set(variables) == {'params', 'batch_stats'}
    for got, want in zip(jax.tree.leaves(variables), jax.tree.leaves(state.variables())):
      assert got.sharding.mesh.shape == mesh.shape
      np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  # What orbax read: the variables, no optimiser state.
  assert restored_trees and all(set(t) == {'params', 'batch_stats'} for t in restored_trees)


def test_evaluation_computes_in_float32_whatever_the_training_dtype(run):
  config, workdir = run
  config = copy.deepcopy(config)
  config.model.dtype = 'bfloat16'  # As the paper configs train.
  assert configs_common.paper().eval.dtype == 'float32'
  (model, _, _), _ = inference.restore(config, workdir)
  assert model.heads.dtype == jnp.float32 and model.text_backbone.dtype == jnp.float32
  config.eval.dtype = 'bfloat16'
  (model, _, _), _ = inference.restore(config, workdir)
  assert model.heads.dtype == jnp.bfloat16
