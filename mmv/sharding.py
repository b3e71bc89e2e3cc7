"""The device mesh and the shardings of train state and batches."""

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'


def make_mesh(devices=None):
  """A 1-D mesh with axis `data` over all devices of all processes."""
  devices = jax.devices() if devices is None else devices
  return Mesh(devices, (DATA_AXIS,))


def replicated(mesh):
  return NamedSharding(mesh, P())


def batch_sharding(mesh):
  """Leading (batch) axis split over `data`."""
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(global_batch_size, mesh, what='batch_size'):
  """The per-process batch size; a clear error if the global batch does not split evenly."""
  devices = mesh.devices.size
  if global_batch_size % devices:
    raise ValueError(f'{what}={global_batch_size} is not divisible by the {devices} devices '
                     'of the mesh; choose a multiple')
  return global_batch_size // jax.process_count()
