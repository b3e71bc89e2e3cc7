"""Fine-tuning (mmv/methods/finetune.py, mmv.finetune): its learning-rate schedule, SGD and
weight decay against torch-style formulas in numpy, its loss against numpy's cross-entropy,
the test crops' positions, the backbone copied from the pretrained checkpoint, BatchNorm
frozen or trained, dropout; the command (slow): exact resume after SIGTERM (its `_main` in
process) and two processes like one (through the command line)."""

import functools
import json
import os
import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tensorflow as tf

from configs import common
from configs import finetune_ucf101
from configs import mmv_s3d
from configs import tiny
from mmv import checkpoint as ckpt_lib
from mmv import finetune
from mmv import finetune_protocol
from mmv import inference
from mmv import sharding
from mmv import train_step
from mmv.benchmarks import benchmark as bm
from mmv.data import video as video_ops
from mmv.methods import finetune as ft_method
from tests import two_stream_input
from tests import launching
from tests import preempt_in_process
from tests import test_import_deepmind

CLASSES = tuple(f'class{i}' for i in range(16))


def _prepared(data_dir, train_videos=64, test_videos=32):
  return bm.Prepared(benchmark='synthetic', split='test', data_dir=data_dir,
                     train=bm.Shards('train', '', (), train_videos),
                     test=bm.Shards('test', '', (), test_videos), class_names=CLASSES,
                     source='shards', fps=10.0)


def _ft_config(data_dir, pretrained=None, workdir='', step=-1, **finetune):
  """configs/finetune_synthetic's protocol on the 64-clip dataset: 4 steps an epoch."""
  c = common.finetune('runlocal')
  c.finetune.batch_size = 16
  c.train.log_every = 1
  c.eval.batch_size = 16
  for key, value in finetune.items():
    c.finetune[key] = value
  c.lock()
  pretrained = pretrained or tiny.get_config()
  return finetune_protocol.run_config(c, pretrained, _prepared(data_dir),
                                      pretrained_workdir=workdir, pretrained_step=step)


def test_epochs_become_steps_and_the_schedule_is_torch_style(data_dir):
  c = _ft_config(data_dir, epochs=6.0, warmup_epochs=1.0, decay_epochs=(2.0, 4.0),
                 warmup_factor=0.1, decay_factor=0.05)
  assert c.train.steps == 6 * 64 // 16 and c.train.batch_size == 16
  schedule = ft_method.learning_rate(c, 0.5)
  # torchvision's WarmupMultiStepLR, as GDT's script runs it: warm-up over 4 steps from
  # 0.1, then × 0.05 from step 8 and again from step 16.
  for t in range(25):
    alpha = min(t / 4, 1.0)
    expected = 0.5 * (0.1 * (1 - alpha) + alpha) * 0.05 ** sum(t >= m for m in (8, 16))
    np.testing.assert_allclose(float(schedule(t)), expected, rtol=1e-6, err_msg=str(t))


def test_ucf101_config_at_paper_size():
  """configs/finetune_ucf101.py on UCF101 split 1 (9,537 training videos, 101 classes) from
  the S3D-G of configs/mmv_s3d.py: GDT's epochs of 10 clips per video in steps of 32, and
  the model's shapes (eval_shape: nothing computed)."""
  c = finetune_ucf101.get_config()
  c.lock()
  prepared = bm.Prepared(benchmark='ucf101', split='1', data_dir='D',
                         train=bm.Shards('train', '', (), 9537),
                         test=bm.Shards('test', '', (), 3783),
                         class_names=tuple(map(str, range(101))), source='raw', fps=25.0)
  rc = finetune_protocol.run_config(c, mmv_s3d.get_config(), prepared, pretrained_workdir='W',
                                    pretrained_step=5)
  per_epoch = 10 * 9537 / 32
  settings = finetune_protocol.settings(rc)
  assert rc.train.steps == round(12 * per_epoch) and rc.train.batch_size == 32
  assert settings['warmup_steps'] == round(2 * per_epoch)
  assert settings['decay_steps'] == [round(6 * per_epoch), round(10 * per_epoch)]
  assert (rc.data.fps, rc.data.num_frames, rc.data.crop_size) == (25.0, 32, 224)
  assert rc.model.video_backbone == 's3d_g' and rc.model.space_to_depth
  model = train_step.create_model(rc)
  shapes = jax.eval_shape(lambda: model.init(
      jax.random.key(0), ft_method.init_batch(rc, 1), train=False))
  assert shapes['params']['classifier']['kernel'].shape == (1024, 101)


def test_sgd_momentum_and_weight_decay_on_the_classifier_only(data_dir):
  c = _ft_config(data_dir, warmup_epochs=0.0, decay_epochs=(5.0,), momentum=0.9,
                 weight_decay=0.1, base_learning_rate=0.01, classifier_learning_rate=0.2)
  tx = ft_method.make_optimizer(c)
  rng = np.random.default_rng(0)
  params = {'video_backbone': {'kernel': rng.normal(size=(3, 2))},
            'classifier': {'kernel': rng.normal(size=(2, 4)), 'bias': rng.normal(size=(4,))}}
  params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
  state, expected = tx.init(params), jax.tree.map(np.asarray, params)
  buffers = jax.tree.map(np.zeros_like, expected)
  for _ in range(3):
    grads = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), params)
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    for part, lr, wd in (('video_backbone', 0.01, 0.0), ('classifier', 0.2, 0.1)):
      for k in expected[part]:  # torch.optim.SGD: buf = μ·buf + (g + wd·p); p -= lr·buf.
        g = np.asarray(grads[part][k]) + wd * expected[part][k]
        buffers[part][k] = 0.9 * buffers[part][k] + g
        expected[part][k] = expected[part][k] - lr * buffers[part][k]
  chex.assert_trees_all_close(jax.tree.map(np.asarray, params), expected, rtol=1e-5)


def test_loss_is_cross_entropy_over_labelled_rows(data_dir):
  loss_fn = ft_method.make_loss_fn(_ft_config(data_dir), None)
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(5, 4)).astype(np.float32)
  labels = np.array([0, 3, -1, 2, 1], np.int32)
  mask = np.array([1, 1, 1, 1, 0], np.float32)  # Row 2 has no label, row 4 is padding.
  loss, terms = loss_fn({'logits': jnp.asarray(logits)},
                        {'label': jnp.asarray(labels), 'mask': jnp.asarray(mask)})
  rows = [0, 1, 3]
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  np.testing.assert_allclose(float(loss), -log_p[rows, labels[rows]].mean(), rtol=1e-5)
  np.testing.assert_allclose(float(terms['accuracy']),
                             np.mean(logits[rows].argmax(-1) == labels[rows]))


@pytest.mark.parametrize('height,width,expected', [
    (40, 60, [(4, 0), (4, 14), (4, 28)]),  # Wide: along the width, centred in height.
    (60, 40, [(0, 4), (14, 4), (28, 4)]),  # Tall: along the height.
    (40, 40, [(4, 0), (4, 4), (4, 8)]),  # Square: along the width.
])
def test_test_crops_lie_at_the_start_centre_and_end_of_the_long_side(height, width, expected):
  boxes = [tuple(int(v) for v in video_ops.crop_box(
      tf.constant(height), tf.constant(width), crop_size=32, train=False,
      seed=tf.constant([0, 0], tf.int64), scale_jitter=(1.0, 1.0), min_resize=0,
      position=p)[:2]) for p in video_ops.CROP_POSITIONS]
  assert boxes == expected


def test_bad_settings_are_refused(data_dir):
  for bad in (dict(batch_norm='frozn'), dict(dropout=1.0), dict(test_crops=2),
              dict(decay_epochs=(4.0, 2.0)), dict(epochs=0.0)):
    with pytest.raises(ValueError):
      _ft_config(data_dir, **bad)
  c = common.finetune()
  c.lock()
  with pytest.raises(AttributeError):  # A typo is an error, not a new field.
    c.finetune.epoch = 3
  with pytest.raises(ValueError, match='python -m mmv.finetune'):
    ft_method.check_config(c)  # Not prepared from a benchmark.


def _check_backbone_copied(data_dir, pretrained, workdir, step, monkeypatch):
  c = _ft_config(data_dir, pretrained, workdir, step=step)
  # The state initialised to zeros (XLA:CPU takes ~15 CPU-s to compile S3D-G's initialisers):
  # what is checked is that create_train_state puts the pretrained backbone in place of the
  # initial one, whatever that is (the release's values are not zeros).
  init_state = train_step.init_state
  monkeypatch.setattr(train_step, 'init_state', lambda rng, **kw: jax.tree.map(
      lambda s: jnp.zeros(s.shape, s.dtype),
      jax.eval_shape(functools.partial(init_state, **kw), rng)))
  model = train_step.create_model(c)
  state = train_step.create_train_state(c, model, ft_method.make_optimizer(c),
                                        sharding.make_mesh(c.mesh))
  (_, restored, _), _ = inference.restore(pretrained, workdir, step)
  for kind in ('params', 'batch_stats'):
    chex.assert_trees_all_equal(jax.device_get(getattr(state, kind)['video_backbone']),
                                jax.device_get(restored[kind]['video_backbone']))
  assert state.params['classifier']['kernel'].shape[1] == len(CLASSES)


@pytest.mark.slow  # Its fixture trains a run.
def test_the_backbone_starts_from_the_pretrained_checkpoint(one_step_run, data_dir,
                                                           monkeypatch):
  _check_backbone_copied(data_dir, *one_step_run, step=1, monkeypatch=monkeypatch)


@pytest.mark.slow  # Imports a (narrowed) release.
def test_the_backbone_starts_from_an_imported_release(data_dir, tmp_path, monkeypatch):
  """DeepMind's S3D-G release (narrowed), imported into a workdir without config.json: its
  config is given (`--pretrained_config` on the command line)."""
  workdir, config = test_import_deepmind.import_narrowed_s3d(tmp_path, data_dir)
  _check_backbone_copied(data_dir, config, workdir, ckpt_lib.workdir_step(workdir), monkeypatch)


@pytest.mark.parametrize('batch_norm,dropout', [('frozen', 0.0), ('train', 0.5)])
def test_frozen_batch_norm_and_dropout(data_dir, batch_norm, dropout):
  c = _ft_config(data_dir, batch_norm=batch_norm, dropout=dropout)
  model = train_step.create_model(c)
  variables = train_step.init_variables(jax.random.key(0), model, c)
  batch = {'video': jax.random.uniform(jax.random.key(1), (4, 8, 32, 32, 3))}
  rngs = train_step.step_rngs(0, 3)
  outputs, stats = train_step.embed(model, variables['params'], variables['batch_stats'],
                                    batch, rngs)
  again, _ = train_step.embed(model, variables['params'], variables['batch_stats'], batch, rngs)
  chex.assert_trees_all_equal(outputs, again)  # Dropout: a function of (seed, step).
  evaluated = model.apply(variables, batch['video'], method=model.classify)
  moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), stats, variables['batch_stats'])
  if batch_norm == 'frozen':  # The moving statistics normalise, and stay.
    chex.assert_trees_all_equal(stats, variables['batch_stats'])
    np.testing.assert_allclose(outputs['logits'], evaluated, rtol=1e-5, atol=1e-6)
  else:
    assert all(jax.tree.leaves(moved))
    assert not np.allclose(outputs['logits'], evaluated)


# Through the command line (slow): the 64-clip dataset, 2 epochs of 4 steps.
_CLI = ['--config', 'configs/finetune_synthetic.py', '--config.finetune.batch_size=16',
        '--config.finetune.epochs=2', '--config.finetune.warmup_epochs=0.5',
        '--config.finetune.decay_epochs=(1.0,1.5)', '--config.finetune.test_clips=2',
        '--config.eval.batch_size=16', '--config.train.log_every=1',
        '--config.train.checkpoint_every=4', '--config.data.shuffle_buffer=16']
STEPS = 8


def _cli(data_dir, pretrained, output, *extra):
  return ['-m', 'mmv.finetune', '--benchmark=synthetic', f'--data_dir={data_dir}',
          f'--workdir={pretrained}', f'--output={output}', *_CLI, *extra]


def _final_variables(output):
  config = inference.read_run_config(output)
  return jax.device_get(inference.restore(config, output, STEPS)[0][1])


def _record(output):
  with open(os.path.join(output, 'eval', 'synthetic',
                         f'finetune_step_{STEPS}_split_test.json')) as f:
    return json.load(f)


def _finetune_command(monkeypatch, data_dir, pretrained, output, **finetune_flags):
  """`python -m mmv.finetune` with `_CLI`'s flags (`_cli`) and `--config.finetune.K=V` for each
  of `finetune_flags`, in this process: mmv.finetune's `_main` on those flag values, as absl
  would parse them (that parsing, and the module run as a program, are
  test_two_processes_train_like_one's). Returns the exit status."""
  config = finetune.finetune_config('synthetic')  # configs/finetune_synthetic.py, locked.
  f = config.finetune
  f.batch_size, f.epochs, f.warmup_epochs, f.decay_epochs = 16, 2.0, 0.5, (1.0, 1.5)
  f.test_clips = 2
  for key, value in finetune_flags.items():
    f[key] = value
  config.eval.batch_size = 16
  config.train.log_every, config.train.checkpoint_every = 1, 4
  config.data.shuffle_buffer = 16
  values = types.SimpleNamespace(
      benchmark='synthetic', data_dir=data_dir, workdir=pretrained, output=output, split=None,
      step=None, config=config, pretrained_config=None, cache_dir=None, record=None,
      coordinator_address=None, num_processes=None, process_id=None, verbose=False)
  monkeypatch.setattr(finetune, 'flags', types.SimpleNamespace(FLAGS=values))
  # The command's start-up (TensorFlow without GPUs, as conftest.py sets it; absl's logging at
  # WARNING with a filter): this process's logging stays.
  monkeypatch.setattr(ckpt_lib, 'start_reader', lambda: None)
  return finetune._main(['mmv.finetune'])  # pylint: disable=protected-access


def _on_4_devices(monkeypatch):
  """This process's runs from now on on the mesh of its first 4 devices, as the one-process
  reference of test_two_processes_train_like_one: the two tests' runs then compile the same
  train step, and the second loads it from the compilation cache."""
  monkeypatch.setattr(sharding, 'make_mesh', functools.partial(sharding.make_mesh,
                                                               devices=jax.devices()[:4]))


@pytest.mark.slow
def test_sigterm_resumes_exactly(one_step_run, data_dir, tmp_path, monkeypatch, capsys):
  """SIGTERM during step 2 → its checkpoint and exit status 0 → the same command resumes: the
  same loss at every step, bit-identical variables and the same test figures as without the
  stop.

  In process: the signal comes from the step itself (tests/preempt_in_process.py); the
  processes' side (a signal from outside, launch.py resuming) is tests/test_preemption.py's,
  whatever the method."""
  _, pretrained = one_step_run
  full, stopped = str(tmp_path / 'full'), str(tmp_path / 'stopped')
  _on_4_devices(monkeypatch)
  preempt_in_process.compile_once(monkeypatch)
  assert _finetune_command(monkeypatch, data_dir, pretrained, full) == 0
  out = capsys.readouterr().out
  record = _record(full)
  assert record['metrics']['finetune_top1'] >= 0 and record['protocol']['train_steps'] == STEPS
  assert record['protocol']['pretrained']['step'] == 1 and 'finetune_top1' in out

  preempt_in_process.sigterm_during_step(monkeypatch, 2)
  assert _finetune_command(monkeypatch, data_dir, pretrained, stopped) == 0
  out = capsys.readouterr().out
  steps = ckpt_lib.existing_steps(os.path.join(stopped, 'checkpoints'))
  assert steps == [2] and 'preempted at step 2' in out, out  # Not a checkpoint step.
  assert not os.path.exists(os.path.join(stopped, 'eval'))  # Tested only once finished.
  assert _finetune_command(monkeypatch, data_dir, pretrained, stopped) == 0
  assert 'resumed from step 2' in capsys.readouterr().out
  expected, got = launching.logged_losses(full), launching.logged_losses(stopped)
  assert sorted(got) == list(range(1, STEPS + 1))
  for step in got:
    assert got[step] == expected[step] * len(got[step]), step
  chex.assert_trees_all_equal(_final_variables(stopped), _final_variables(full))
  assert _record(stopped)['splits'] == record['splits']


@pytest.mark.slow
def test_two_processes_train_like_one(one_step_run, data_dir, tmp_path, monkeypatch):
  """2 processes × 2 devices (gloo, `python -m mmv.finetune` through its command line) and 1
  process × 4 devices reading the same batches (the two processes' streams side by side): the
  same losses to float rounding.

  The reference is this process on 4 of its 8 devices (the command's `_main`, as
  `_finetune_command`), run while the two processes do: a third launched process cost ~9 CPU-s
  more (imports and start-up) for the same computation."""
  _, pretrained = one_step_run
  multi, single = str(tmp_path / 'multi'), str(tmp_path / 'single')
  # The losses are compared: the reference's test after training (one process) on 1 clip × 1
  # crop, the least it can do.
  test = ['--config.finetune.test_clips=1', '--config.finetune.test_crops=1']
  port = launching.free_port()
  processes = [launching.Process(_cli(
      data_dir, pretrained, multi, f'--coordinator_address=127.0.0.1:{port}',
      '--num_processes=2', f'--process_id={i}', *test), devices=2) for i in (0, 1)]
  _on_4_devices(monkeypatch)
  monkeypatch.setattr(finetune, 'run', functools.partial(
      finetune.run, input_fn=two_stream_input.two_stream_batches))
  try:
    status = _finetune_command(monkeypatch, data_dir, pretrained, single, test_clips=1,
                               test_crops=1)
  except BaseException:
    for p in processes:
      p.popen.kill()
    raise
  outputs = launching.finish_together(processes, timeout=300)
  assert status == 0 and 'the test runs in one process' in outputs[0]
  got, expected = launching.logged_losses(multi), launching.logged_losses(single)
  assert sorted(got) == sorted(expected) == list(range(1, STEPS + 1))
  np.testing.assert_allclose([got[s][0] for s in sorted(got)],
                             [expected[s][0] for s in sorted(got)], rtol=1e-5)
