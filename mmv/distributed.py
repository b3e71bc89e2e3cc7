"""Starting jax.distributed for the command-line tools that run on several hosts (launch.py,
`mmv.finetune`): the same flags, the same detection of TPU slices and SLURM jobs."""

import os

import jax


def auto_detect_cluster():
  """True on a multi-host TPU slice or a SLURM job with several tasks."""
  if int(os.environ.get('SLURM_NTASKS', '1')) > 1:
    return True
  return bool(os.environ.get('TPU_WORKER_HOSTNAMES', '').count(','))


def use_gloo_on_cpu():
  """CPU collectives across processes need gloo (it does nothing to GPU or TPU collectives)."""
  if jax.config.jax_platforms in (None, '', 'cpu'):
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')


def initialize(coordinator_address=None, num_processes=None, process_id=None):
  """jax.distributed.initialize with the three given together, or detected on a cluster (TPU
  pod, SLURM); nothing for a single process. A ValueError when only some are given."""
  explicit = [coordinator_address, num_processes, process_id]
  if any(v is not None for v in explicit):
    if any(v is None for v in explicit):
      raise ValueError('--coordinator_address, --num_processes and --process_id go together')
    if num_processes > 1:
      use_gloo_on_cpu()
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
  elif auto_detect_cluster():
    use_gloo_on_cpu()
    jax.distributed.initialize()
