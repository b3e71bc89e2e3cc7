"""End to end through the two binaries: launch.py trains and checkpoints, mmv.evaluate reports."""

import json
import os

from mmv.evaluators import retrieval
import numpy as np
import pytest

from tests import launching
from tests import test_evaluate_binary as evaluate_binary

# Launches processes, converts media or trains: not in `make test-fast`.
pytestmark = pytest.mark.slow


def test_train_then_evaluate_binaries(data_dir, tmp_path):
  """launch.py, then mmv.evaluate twice (the second from the first's cached features), each as
  `python ARGV` runs it, on 4 devices, on one interpreter start-up
  (test_evaluate_binary.run_each)."""
  workdir = str(tmp_path / 'run')
  common = ['--config', 'configs/tiny.py', f'--config.data.data_dir={data_dir}'] + launching.SMALL
  train = ['launch.py', f'--workdir={workdir}'] + common + [
      '--config.train.steps=3', '--config.train.log_every=1', '--config.train.checkpoint_every=3']
  # The evaluation binary reads the model from the run's config.json.
  outputs = [str(tmp_path / 'eval.json'), str(tmp_path / 'again.json')]
  evaluate_args = ['-m', 'mmv.evaluate', '--benchmark=synthetic', f'--data_dir={data_dir}',
                   f'--workdir={workdir}', '--noprogress']
  xla_flags = [f for f in os.environ.get('XLA_FLAGS', '').split()
               if not f.startswith('--xla_force_host_platform_device_count')]
  results = evaluate_binary.run_each(
      tmp_path, [train, evaluate_args + [f'--output={outputs[0]}'],
                 evaluate_args + [f'--output={outputs[1]}', '--linear_c=0.5']],
      preload=('mmv.train', 'mmv.distributed', 'mmv.workdir_lock') + evaluate_binary.PRELOAD,
      env={'XLA_FLAGS': ' '.join(xla_flags + ['--xla_force_host_platform_device_count=4'])})
  for status, out, stderr in results:
    assert status == 0, out + '\n--- stderr ---\n' + stderr[-4000:]
  (_, out, _), (_, evaluated, _), (_, again_out, _) = results

  assert 'step 3/3 loss=' in out and 'ex/s' in out
  records = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  assert [r['step'] for r in records] == [1, 2, 3]
  assert {'loss', 'loss_va', 'loss_vt'} <= set(records[0])
  assert records[-1]['data_skipped'] == 0
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', '3'))

  assert '| t2v_R@1 |' in evaluated and '| linear_top1 |' in evaluated
  [record] = json.load(open(outputs[0]))
  assert record['step'] == 3 and record['benchmark'] == 'synthetic'
  metrics = record['metrics']
  for key in ('t2v_R@1', 't2v_R@5', 't2v_R@10', 't2v_MedR', 't2v_MeanR', 'v2t_R@1', 'v2t_R@5',
              'v2t_R@10', 'v2t_MedR', 'linear_top1', 'linear_top5', 'zero_shot_top1'):
    assert key in metrics, key
  result = record['splits']['test']
  assert result['retrieval_num_queries'] == 32  # Every test clip once, padding dropped.
  assert result['linear_num_train_videos'] == 64 and result['linear_num_classes'] == 16
  assert result['linear_num_train_clips'] == 64 * 2  # Two augmented passes (configs below).
  protocol = record['protocol']
  assert protocol['videos_read']['test'] == {'retrieval_test': 32, 'train_pass0': 64,
                                             'train_pass1': 64, 'linear_test': 32}
  assert set(protocol['videos_skipped']['test'].values()) == {0}
  assert protocol['linear']['test_clips'] == 2 and protocol['retrieval']['clips'] == 2
  assert 0 <= metrics['linear_top1'] <= 100
  assert metrics['t2v_R@1'] <= metrics['t2v_R@5'] <= metrics['t2v_R@10'] <= 100

  # Again from the cached features with another C: the same features, another probe; the
  # retrieval and zero-shot numbers are those of the first run. The record of the step
  # (the first run's, replaced) is the second's.
  assert again_out.count('features from the cache') == 5 and 'computed' not in again_out
  [again] = json.load(open(outputs[1]))
  assert json.load(open(os.path.join(workdir, 'eval', 'synthetic', 'step_3.json'))) == again
  assert again['splits']['test']['linear_C'] == 0.5
  for key, value in metrics.items():
    if not key.startswith('linear_'):
      assert again['metrics'][key] == value, key


def test_retrieval_metrics_on_a_known_ranking():
  video = np.eye(4, dtype=np.float32)
  # Query 0 finds its video first; query 1 second; query 2 and 3 fourth.
  text = np.array([[1, 0, 0, 0], [0.9, 0.5, 0, 0], [1, 1, 0.2, 1], [1, 1, 1, 0.1]],
                  np.float32)
  m = retrieval.retrieval_metrics(text, video)
  assert m['t2v_R@1'] == 25.0 and m['t2v_R@5'] == 100.0
  assert m['t2v_MedR'] == 3.0 and m['t2v_MeanR'] == 2.75
  assert m['num_queries'] == 4
