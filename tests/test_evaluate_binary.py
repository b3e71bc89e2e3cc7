"""The evaluation binary as a user runs it: errors the inputs decide end it in one line before
any feature is computed, and a UCF101 evaluation's memory is bounded by its batch of clips."""

import itertools
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from mmv import benchmarks
from mmv import evaluate
from mmv.benchmarks import protocols
from mmv.evaluators import features as features_lib
from tests import conftest
from tests import media_files

# Launches processes, converts media or trains: not in `make test-fast`.
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIB = 2**30
# Peak resident memory a UCF101 evaluation of 2 test videos (10 windows of 32 frames at 224 x
# 224) may take on the 8 test devices: 3.9 GiB when this was written. Before batches were
# counted in clips, a batch was 64 videos x 10 windows whatever the videos, and the binary took
# more than 10 GiB (24 GB on a 24 GiB machine, where the kernel killed it).
PEAK_BOUND = 6 * GIB
KILL_ABOVE = 8 * GIB  # Spares the machine when the bound is broken.


def _memory(pid, field):
  """`field` ('VmRSS': resident now, 'VmHWM': its peak) of process `pid` in bytes (0 once it
  is gone)."""
  try:
    with open(f'/proc/{pid}/status') as f:
      for line in f:
        if line.startswith(f'{field}:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return 0


# Several command lines on one interpreter start-up: it imports `preload` (the libraries the
# binaries import: TensorFlow, JAX, ...; never a binary's own module, which runs as __main__)
# once, then forks a child per command line, one after the other; the child runs it as
# `python ARGV` does (runpy's run_module for `-m NAME`, run_path for a script, as __main__), its
# stdout and stderr in files, and ends as that interpreter ends (an error's exit status, an
# escaped exception's traceback). Prints each child's exit status, one per line.
FORK_EACH = r'''
import importlib, json, os, runpy, sys
for name in json.loads(sys.argv[2]):
  importlib.import_module(name)
for argv, out, err in json.loads(sys.argv[1]):
  sys.stdout.flush()
  sys.stderr.flush()
  pid = os.fork()
  if pid == 0:
    break
  print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
else:
  sys.exit(0)
for fd, path in ((1, out), (2, err)):
  os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
if argv[0] == '-m':
  sys.argv = argv[1:]  # runpy puts the module's path first, as `-m` does.
  runpy.run_module(argv[1], run_name='__main__', alter_sys=True)
else:
  sys.argv = argv
  runpy.run_path(argv[0], run_name='__main__')
'''
# What mmv.evaluate imports.
PRELOAD = ('tensorboardX', 'tqdm', 'mmv.benchmarks', 'mmv.checkpoint', 'mmv.evaluate_inputs',
           'mmv.evaluate_protocol', 'mmv.evaluate_split', 'mmv.inference',
           'mmv.evaluators.report')


def run_each(tmp_path, commands, preload=PRELOAD, env=None):
  """[(exit status, stdout, stderr)] of each command line (`['-m', MODULE, ...]` or
  `[SCRIPT, ...]`) run by `FORK_EACH` in turn: what `python ARGV` in ROOT would give, for one
  start-up (most of a launch that ends in an error)."""
  files = [(argv, str(tmp_path / f'command{i}.stdout'), str(tmp_path / f'command{i}.stderr'))
           for i, argv in enumerate(commands)]
  env = {**os.environ, 'PYTHONPATH': ROOT, **(env or {})}
  result = subprocess.run([sys.executable, '-c', FORK_EACH, json.dumps(files),
                           json.dumps(list(preload))], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  statuses = [int(line) for line in result.stdout.split()]
  assert len(statuses) == len(commands), result.stdout + result.stderr[-3000:]
  out = []
  for status, (_, stdout, stderr) in zip(statuses, files):
    with open(stdout) as f, open(stderr) as g:
      out.append((status, f.read(), g.read()))
  return out


def evaluate_binary(tmp_path, *flags, kill_above=None):
  """(exit status, stdout, stderr, peak resident bytes) of `python -m mmv.evaluate FLAGS`,
  killed when its memory passes `kill_above`.

  The peak is the process's own VmHWM, read while it runs: wait4's ru_maxrss would also count
  the pytest worker it was forked from (Linux keeps the pre-exec memory's high-water mark), and
  a worker that ran other tests first can be gigabytes larger than the evaluation."""
  out, err = tmp_path / 'stdout', tmp_path / 'stderr'
  env = {**os.environ, 'PYTHONPATH': ROOT, 'TF_CPP_MIN_LOG_LEVEL': '3'}
  with open(out, 'w') as stdout, open(err, 'w') as stderr:
    child = subprocess.Popen([sys.executable, '-m', 'mmv.evaluate', '--progress=false', *flags],
                             cwd=ROOT, env=env, stdout=stdout, stderr=stderr)
    peak = 0
    while child.poll() is None:
      peak = max(peak, _memory(child.pid, 'VmHWM'))
      if kill_above and _memory(child.pid, 'VmRSS') > kill_above:
        child.kill()
      time.sleep(0.05)
  return child.returncode, out.read_text(), err.read_text(), peak


@pytest.fixture(scope='module')
def run(data_dir, tmp_path_factory):
  """(config, workdir) of a `small_config` run, freshly initialised (checkpoint 1): what is
  checked here does not depend on trained weights."""
  config = conftest.small_config(data_dir)
  return config, conftest.initialised_run(config, str(tmp_path_factory.mktemp('run')), 1)


def _error_lines(stderr):
  """The lines the binary wrote to stderr (TensorFlow's and XLA's start-up notes aside)."""
  return [line for line in stderr.splitlines()
          if line and not line.startswith(('I0000', 'W0000', 'WARNING: All log messages'))]


def test_cross_validation_without_2_videos_per_class_fails_in_one_line(run,
                                                                     tmp_path):
  """The synthetic training split (64 videos of 16 classes) has a class with one video."""
  config, workdir = run
  common = ['-m', 'mmv.evaluate', '--progress=false', '--benchmark=synthetic',
            f'--data_dir={config.data.data_dir}', f'--workdir={workdir}']
  (status, stdout, stderr), (status_7, _, stderr_7) = run_each(
      tmp_path, [common + ['--linear_c=0.1,1'], common + ['--step=7']],
      env={'TF_CPP_MIN_LOG_LEVEL': '3'})
  assert status == 1
  assert 'features computed' not in stdout  # Checked before any feature.
  assert not os.path.exists(os.path.join(workdir, 'eval', 'synthetic', 'features'))
  (line,) = _error_lines(stderr)
  assert line == ('error: synthetic split test: eval.synthetic.c = (0.1, 1.0) chooses C by '
                  'cross-validation, which needs 2 training videos of each class; class '
                  'triangle_right has one: give one C (--linear_c=0.1) or more training videos '
                  '(--verbose shows the traceback)')

  assert status_7 == 1 and _error_lines(stderr_7) == [
      f'error: no checkpoint of step 7 in {workdir}/checkpoints; steps there: [1] (--verbose '
      'shows the traceback)']


def _ucf101_of_8_videos(root):
  """A UCF101 layout of 2 classes x 4 groups of 1.6 s videos: split 1 tests on 2 of them."""
  classes = ('ApplyEyeMakeup', 'Archery')
  lists = os.path.join(root, 'ucfTrainTestlist')
  os.makedirs(lists)
  with open(os.path.join(lists, 'classInd.txt'), 'w') as f:
    f.write(''.join(f'{i} {c}\n' for i, c in enumerate(classes, 1)))
  name = lambda c, g: f'{c}/v_{c}_g{g:02d}_c01.avi'
  for split in (1, 2, 3):
    with open(os.path.join(lists, f'trainlist0{split}.txt'), 'w') as f:
      f.write(''.join(f'{name(c, g)} {i}\n' for i, c in enumerate(classes, 1)
                      for g in (1, 2, 3, 4) if g != split))
    with open(os.path.join(lists, f'testlist0{split}.txt'), 'w') as f:
      f.write(''.join(f'{name(c, split)}\n' for c in classes))
  source = os.path.join(root, 'source.avi')
  media_files.write_video(source, video_codec='mjpeg')
  for c in classes:
    os.makedirs(os.path.join(root, 'UCF-101', c))
    for g in (1, 2, 3, 4):
      shutil.copy(source, os.path.join(root, 'UCF-101', name(c, g)))


def test_a_ucf101_evaluation_takes_the_memory_of_its_batch_of_clips(run,
                                                                   tmp_path):
  config, workdir = run
  root = str(tmp_path / 'ucf')
  _ucf101_of_8_videos(root)
  # The run's model with the published UCF101 block and eval.batch_size; one training pass.
  config_file = tmp_path / 'config.py'
  config_file.write_text(
      'from tests import conftest\n\n\n'
      'def get_config():\n'
      f'  c = conftest.small_config({config.data.data_dir!r})\n'
      f'  c.eval.batch_size = {protocols.eval_config().batch_size}\n'
      '  c.eval.ucf101.train_passes = 1\n'
      '  return c\n')
  # The videos converted here first, as the binary converts them (default options), in this
  # process: the binary finds them in DATA_DIR/.mmv_cache and measures the evaluation alone
  # (converting, it starts a pool of decoding processes, each importing TensorFlow and JAX).
  small = conftest.small_config(config.data.data_dir)
  evaluate.prepare_splits(benchmarks.get('ucf101'), small, root, num_workers=1, progress=False)
  status, stdout, stderr, peak = evaluate_binary(
      tmp_path, '--benchmark=ucf101', f'--data_dir={root}', f'--workdir={workdir}',
      f'--config={config_file}', '--nocache_features', kill_above=KILL_ABOVE)
  print(f'peak resident memory {peak / GIB:.2f} GiB')
  assert peak < PEAK_BOUND, f'{peak / GIB:.2f} GiB (killed above {KILL_ABOVE / GIB:g})'
  assert status == 0, stderr[-2000:]
  assert 'linear_test: features computed (2 of 2 videos' in stdout


def test_a_batch_holds_whole_videos_up_to_its_clips_split_evenly_over_the_devices():
  for batch_clips, clips, devices, num_videos in itertools.product(
      (1, 16, 64, 100), (1, 3, 10), (1, 2, 8), (1, 2, 5, 40)):
    got = features_lib.videos_per_batch(batch_clips, clips, devices, num_videos)
    even = [v for v in range(1, 1000) if v * clips % devices == 0]
    # Padding only as far as the devices need: no more videos than the first even count
    # that holds them all.
    needed = min(v for v in even if v >= num_videos)
    fitting = [v for v in even if v * clips <= batch_clips and v <= needed]
    assert got == (max(fitting) if fitting else even[0]), (batch_clips, clips, devices,
                                                           num_videos)
