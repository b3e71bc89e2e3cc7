"""MMV trains as it did before methods became a unit (mmv/methods/): configs/tiny.py logs the
losses recorded from main before that change (tests/data/mmv_tiny_losses.json says how).

The run is the recorded command itself, in a subprocess without the tests' fake devices and
compiler flags, on the synthetic dataset of the recorded command line (`python -m
mmv.data.synthetic --output_dir DIR`, whose main calls `synthetic.generate(DIR)` with its
defaults; called here in the test's process, saving a process's start-up).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mmv.data import synthetic

# Launches processes, converts media or trains: not in `make test-fast`.
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORD = os.path.join(ROOT, 'tests', 'data', 'mmv_tiny_losses.json')


def _run(*args):
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  subprocess.run([sys.executable, *args], cwd=ROOT, env=env, check=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_tiny_config_logs_the_recorded_losses_at_steps_1_to_10(tmp_path):
  data, workdir = str(tmp_path / 'synthetic'), str(tmp_path / 'run')
  synthetic.generate(data)  # What `python -m mmv.data.synthetic --output_dir DATA` writes.
  _run('launch.py', '--config', 'configs/tiny.py', '--workdir', workdir,
       f'--config.data.data_dir={data}', '--config.train.steps=10',
       '--config.train.log_every=1', '--config.train.checkpoint_every=10')
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    logged = [json.loads(line) for line in f]
  with open(RECORD) as f:
    recorded = json.load(f)['steps']
  assert [r['step'] for r in logged] == [r['step'] for r in recorded] == list(range(1, 11))
  for key in ('loss', 'loss_va', 'loss_vt', 'grad_norm'):
    np.testing.assert_allclose([r[key] for r in logged], [r[key] for r in recorded],
                               rtol=1e-5, err_msg=key)
