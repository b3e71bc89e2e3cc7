"""End to end through the two binaries: launch.py trains and checkpoints, mmv.evaluate reports."""

import json
import os

from mmv import evaluate
from mmv.evaluators import retrieval
import numpy as np

from tests import launching


def _run(args):
  return launching.run(args, devices=4)


def test_train_then_evaluate_binaries(data_dir, tmp_path):
  workdir = str(tmp_path / 'run')
  common = ['--config', 'configs/tiny.py', f'--config.data.data_dir={data_dir}'] + launching.SMALL
  out = _run(['launch.py', f'--workdir={workdir}'] + common + [
      '--config.train.steps=3', '--config.train.log_every=1', '--config.train.checkpoint_every=3'])
  assert 'step 3/3 loss=' in out and 'ex/s' in out
  records = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  assert [r['step'] for r in records] == [1, 2, 3]
  assert {'loss', 'loss_va', 'loss_vt'} <= set(records[0])
  assert records[-1]['data_skipped'] == 0
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', '3'))

  output = str(tmp_path / 'eval.json')
  out = _run(['-m', 'mmv.evaluate', f'--workdir={workdir}', f'--output={output}'] + common)
  assert 't2v_R@1' in out
  results = json.load(open(output))
  for key in ('t2v_R@1', 't2v_R@5', 't2v_R@10', 't2v_MedR', 'v2t_R@1', 'v2t_R@5', 'v2t_R@10',
              'v2t_MedR', 'num_queries', 'linear_top1', 'num_classes'):
    assert key in results, key
  assert results['step'] == 3
  assert results['num_queries'] == 32  # Every test clip once, padding dropped.
  assert results['num_train_clips'] == 64 and results['data_skipped'] == 0
  assert results['num_classes'] == 16
  assert 0 <= results['linear_top1'] <= 100
  assert results['t2v_R@1'] <= results['t2v_R@5'] <= results['t2v_R@10'] <= 100


def test_retrieval_metrics_on_a_known_ranking():
  video = np.eye(4, dtype=np.float32)
  # Query 0 finds its video first; query 1 second; query 2 and 3 fourth.
  text = np.array([[1, 0, 0, 0], [0.9, 0.5, 0, 0], [1, 1, 0.2, 1], [1, 1, 1, 0.1]],
                  np.float32)
  m = retrieval.retrieval_metrics(text, video)
  assert m['t2v_R@1'] == 25.0 and m['t2v_R@5'] == 100.0
  assert m['t2v_MedR'] == 3.0 and m['t2v_MeanR'] == 2.75
  assert m['num_queries'] == 4
  assert evaluate.format_table({'a': 1.0, 'bb': 2}).splitlines()[2] == 'a   1.00'
