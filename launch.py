"""Launches MMV training.

    python launch.py --config configs/tiny.py --workdir runs/demo [--config.train.steps=100]

On several hosts, run the same command on every host with
`--coordinator_address HOST:PORT --num_processes N --process_id I`; on TPU pods and SLURM
these are detected when left out (see the README).
"""

import os

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags
import tensorflow as tf

from mmv import train

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file (configs/*.py).',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Checkpoints, metrics and TensorBoard go here.')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None,
                                   'HOST:PORT of process 0 for jax.distributed.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Number of processes (hosts).')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'Index of this process.')
flags.mark_flags_as_required(['config', 'workdir'])


def _auto_detect_cluster():
  """True on a multi-host TPU slice or a SLURM job with several tasks."""
  if int(os.environ.get('SLURM_NTASKS', '1')) > 1:
    return True
  return bool(os.environ.get('TPU_WORKER_HOSTNAMES', '').count(','))


def _use_gloo_on_cpu():
  """CPU collectives across processes need gloo (it does nothing to GPU or TPU collectives)."""
  if jax.config.jax_platforms in (None, '', 'cpu'):
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')


def initialize_distributed():
  explicit = [_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value]
  if any(v is not None for v in explicit):
    if any(v is None for v in explicit):
      raise app.UsageError('--coordinator_address, --num_processes and --process_id go '
                           'together')
    if _NUM_PROCESSES.value > 1:
      _use_gloo_on_cpu()
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  elif _auto_detect_cluster():
    _use_gloo_on_cpu()
    jax.distributed.initialize()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  tf.config.set_visible_devices([], 'GPU')  # tf.data only; the accelerators are JAX's.
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save step at INFO.
  initialize_distributed()
  summary = train.train(_CONFIG.value, _WORKDIR.value)
  # A preempted run exits cleanly (status 0) too: its checkpoint is complete.
  ending = 'preempted' if summary['preempted'] else 'finished'
  print(f'{ending} at step {summary["step"]}; workdir {_WORKDIR.value}', flush=True)


if __name__ == '__main__':
  app.run(main)
