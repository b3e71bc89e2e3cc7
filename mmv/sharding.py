"""The device mesh, the parameter sharding rules and the batch sharding.

The mesh has two axes: `data` and `fsdp`. The batch is split over both (every device holds a
different slice of the global batch); parameters and their optimiser moments are replicated or,
where a rule of `config.mesh.param_rules` says 'fsdp', split over the `fsdp` axis (ZeRO-3 style:
XLA gathers them for the forward pass and reduce-scatters their gradients).
"""

import re

import jax
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'
FSDP_AXIS = 'fsdp'
BATCH_AXES = (DATA_AXIS, FSDP_AXIS)  # The batch is split over every device of the mesh.
RULE_KINDS = ('replicate', 'fsdp')


def make_mesh(mesh_config=None, devices=None):
  """The (data, fsdp) mesh over all devices of all processes.

  `mesh_config.data` = -1 takes the devices that `mesh_config.fsdp` leaves; without a config
  every device is on `data`.
  """
  devices = jax.devices() if devices is None else devices
  data, fsdp = (-1, 1) if mesh_config is None else (mesh_config.data, mesh_config.fsdp)
  n = len(devices)
  if fsdp < 1 or n % fsdp:
    raise ValueError(f'mesh.fsdp={fsdp} must be a positive divisor of the {n} devices')
  data = n // fsdp if data == -1 else data
  if data * fsdp != n:
    raise ValueError(f'mesh.data × mesh.fsdp = {data} × {fsdp} must equal the {n} devices '
                     '(mesh.data=-1 takes what fsdp leaves)')
  # create_device_mesh orders devices by the physical topology on TPUs (ICI neighbours along
  # the fsdp axis); on other platforms it keeps jax.devices() order, process by process.
  return Mesh(mesh_utils.create_device_mesh((data, fsdp), devices), (DATA_AXIS, FSDP_AXIS))


def replicated(mesh):
  return NamedSharding(mesh, P())


def batch_sharding(mesh):
  """Leading (batch) axis split over every device."""
  return NamedSharding(mesh, P(BATCH_AXES))


def check_batch_size(global_batch_size, mesh, what='batch_size'):
  """The per-process batch size; a clear error if the global batch does not split evenly."""
  devices = mesh.devices.size
  if global_batch_size % devices:
    raise ValueError(f'{what}={global_batch_size} is not divisible by the {devices} devices '
                     'of the mesh; choose a multiple')
  return global_batch_size // jax.process_count()


def check_rules(rules):
  """A clear error for a rule that is not (regex, 'replicate' | 'fsdp')."""
  for rule in rules:
    if len(rule) != 2 or rule[1] not in RULE_KINDS:
      raise ValueError(f'sharding rule {rule!r} is not (regex, one of {RULE_KINDS})')
    re.compile(rule[0])


def fsdp_spec(shape, fsdp_size):
  """Splits the largest dimension divisible by the fsdp size (the later one on ties)."""
  divisible = [(size, axis) for axis, size in enumerate(shape) if size % fsdp_size == 0]
  if fsdp_size == 1 or not divisible:
    return P()  # Nothing to split (or nothing divisible, e.g. a bias of odd size).
  _, axis = max(divisible)
  return P(*[FSDP_AXIS if a == axis else None for a in range(len(shape))])


def param_spec(name, shape, rules, fsdp_size):
  """The PartitionSpec of parameter `name` ('video_backbone/Conv_0/kernel') under `rules`.

  The first rule whose regex matches the name (`re.search`) decides.
  """
  for pattern, kind in rules:
    if re.search(pattern, name):
      return P() if kind == 'replicate' else fsdp_spec(shape, fsdp_size)
  raise ValueError(f'no sharding rule matches parameter {name!r}; end the rules with '
                   "('.*', 'replicate')")


def param_shardings(params, mesh, rules):
  """NamedShardings of a params pytree (of arrays or ShapeDtypeStructs) under `rules`."""
  check_rules(rules)
  fsdp_size = mesh.shape[FSDP_AXIS]

  def sharding(path, leaf):
    name = jax.tree_util.keystr(path, simple=True, separator='/')
    return NamedSharding(mesh, param_spec(name, leaf.shape, rules, fsdp_size))

  return jax.tree_util.tree_map_with_path(sharding, params)
