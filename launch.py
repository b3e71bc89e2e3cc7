"""Launches MMV training.

    python launch.py --config configs/tiny.py --workdir runs/demo [--config.train.steps=100]

Mistakes (a missing config file, a mistyped override, a missing dataset, a workdir in use)
end in one line saying what to do; `--verbose` shows the traceback too. Ctrl-C (on any
process) stops at the next step with a checkpoint (exit status 130); a second Ctrl-C aborts
without one.

On several hosts, run the same command on every host with
`--coordinator_address HOST:PORT --num_processes N --process_id I`; on TPU pods and SLURM
these are detected when left out (see the README).
"""

import os
import sys

import mmv  # pylint: disable=unused-import  # First: quiets TensorFlow's start-up lines.

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
import tensorflow as tf

from mmv import distributed
from mmv import train
from mmv import workdir_lock

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file (configs/*.py).',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Checkpoints, metrics and TensorBoard go here.')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None,
                                   'HOST:PORT of process 0 for jax.distributed.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Number of processes (hosts).')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'Index of this process.')
_LOCK_STALE_AFTER = flags.DEFINE_float(
    'lock_stale_after', workdir_lock.STALE_AFTER_SECONDS,
    'Seconds after which the workdir lock of a run whose heartbeat stopped (killed, its host '
    'lost) is taken over.')
_VERBOSE = flags.DEFINE_bool('verbose', False, 'Tracebacks for errors, not one line.')
flags.mark_flags_as_required(['config', 'workdir'])

# Errors from what the user gave (files, flags, config values, the data): one line each.
_USER_ERRORS = (OSError, ValueError, KeyError, TypeError, flags.Error,
                workdir_lock.WorkdirLockedError, train.NonFiniteLossError)


def initialize_distributed():
  try:
    distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from None


def _fail(message):
  print(f'error: {message}', file=sys.stderr, flush=True)
  sys.exit(1)


def _describe(error, argv):
  """One line for a user's mistake: the config file, an override, or a message of the code."""
  if isinstance(error, KeyError):  # ml_collections: the key and a "Did you mean" line.
    message = str(error.args[0] if error.args else error)
    key = message.splitlines()[0].strip("'")
    overrides = [a.split('=')[0] for a in argv if a.startswith('--config.') and
                 key in a.split('=')[0].split('.')]
    if overrides:
      return (f'{overrides[0]}: the config has no field {key!r} '
              f'({" ".join(message.splitlines()[1:]) or "see configs/common.py"})')
    return f'no config field {message}'
  return ' '.join(str(error).split())


def parse_flags(argv):
  """absl's parsing, with the config's errors (raised while parsing overrides) in one line."""
  try:
    return flags.FLAGS(argv)
  except _USER_ERRORS as e:
    if '--verbose' in argv:
      raise
    _fail(f'{_describe(e, argv)} (--helpshort lists the flags)')


def _config():
  # A config file that failed to load shows only when a field is read, deep inside training.
  path = flags.FLAGS['config'].config_filename.split(':')[0]  # Without ':runlocal'.
  if not os.path.exists(path):
    raise FileNotFoundError(f'no config file {path!r}: give one of configs/*.py, e.g. '
                            '--config configs/tiny.py')
  return _CONFIG.value


def _train(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  config = _config()
  tf.config.set_visible_devices([], 'GPU')  # tf.data only; the accelerators are JAX's.
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save step at INFO.
  initialize_distributed()
  summary = train.train(config, _WORKDIR.value, lock_stale_after=_LOCK_STALE_AFTER.value)
  # A preempted run exits cleanly (status 0) too: its checkpoint is complete. Ctrl-C exits
  # with 130, the shell's status for it, so that scripts stop too.
  ending = {'SIGINT': 'interrupted', False: 'finished'}.get(summary['preempted'], 'preempted')
  print(f'{ending} at step {summary["step"]}; workdir {_WORKDIR.value}', flush=True)
  return 130 if summary['preempted'] == 'SIGINT' else 0


def main(argv):
  try:
    return _train(argv)
  except KeyboardInterrupt:  # A second Ctrl-C (or one before training started).
    print('aborted by Ctrl-C: nothing saved since the last checkpoint', flush=True,
          file=sys.stderr)
    return 130
  except _USER_ERRORS as e:
    if _VERBOSE.value:
      raise
    _fail(f'{_describe(e, sys.argv)} (--verbose shows the traceback)')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
