"""The command lines start without TensorFlow's start-up lines on stderr; MMV_VERBOSE=1 brings
them back, and a value the user set is kept. (launch.py's quiet start: test_launch.py's
test_a_mistake_ends_in_one_line_and_leaves_no_workdir, on a run it launches anyway.)"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What TensorFlow 2.21 prints when it is imported with its defaults (absl's line comes before
# the first message logged; oneDNN's is on x86-64 Linux builds; the CPU feature line where the
# CPU has instructions beyond the build's).
START_UP_LINES = ('All log messages before absl::InitializeLog()', 'oneDNN custom operations',
                  'cpu_feature_guard', 'This TensorFlow binary is optimized')
ABSL_LINE = START_UP_LINES[0]
# The variables mmv sets (the tests' conftest sets TF_CPP_MIN_LOG_LEVEL): not in a user's shell.
MMV_SETS = ('TF_CPP_MIN_LOG_LEVEL', 'TF_ENABLE_ONEDNN_OPTS', 'MMV_VERBOSE')


def _stderr(args, **env):
  """(stdout, stderr) of `python args` from the repository root, in an environment without the
  variables mmv sets (the tests' conftest sets TF_CPP_MIN_LOG_LEVEL) plus `env`."""
  base = {k: v for k, v in os.environ.items() if k not in MMV_SETS}
  done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                        env={**base, 'PYTHONPATH': ROOT, **env}, timeout=120, check=False)
  return done.stdout, done.stderr


def start_up_lines(stderr):
  return [line for line in stderr.splitlines() if any(s in line for s in START_UP_LINES)]


@pytest.mark.slow
def test_a_cli_starts_quietly_and_mmv_verbose_brings_tensorflow_lines_back():
  stdout, stderr = _stderr(['-m', 'mmv.search', '--help'])
  assert '--index' in stdout  # The command ran (and imported TensorFlow).
  assert start_up_lines(stderr) == [], stderr
  # The user's own value is kept: oneDNN asked for, and the log level left alone, its line is
  # back, with absl's before it.
  _, verbose = _stderr(['-m', 'mmv.search', '--help'], MMV_VERBOSE='1',
                       TF_ENABLE_ONEDNN_OPTS='1')
  assert ABSL_LINE in verbose, verbose
  assert 'oneDNN custom operations are on' in verbose, verbose
