"""Reads a torchvision-layout R(2+1)D-18 from a PyTorch .pth file into this framework's variables.

GDT (facebookresearch/GDT: utils.py save_checkpoint writes {'model': state_dict, 'optimizer',
'lr_scheduler', 'epoch', 'args'}; its released files hold 'model' or 'state_dict') and XDC release
their video encoders as torchvision's `r2plus1d_18` state dict, under a prefix such as
'module.video_network.base.'. `read_backbone(path)` returns {'params', 'batch_stats'} of
`mmv.models.r2plus1d.R2Plus1D18`.

The file is read without running code from it and without torch. A .pth is a pickle that names
the functions rebuilding its objects (torch.save writes `torch._utils._rebuild_tensor_v2`,
`torch.FloatStorage`, ..., and whatever else the checkpoint holds, such as GDT's
`argparse.Namespace`). Here tensors are rebuilt as numpy arrays from the raw storages, and every
other name becomes an inert `Opaque` record: nothing the file names is imported or called.
Both layouts torch.save has written are read: the zip archive (torch >= 1.6: data.pkl plus one
file per storage) and the legacy stream (torch < 1.6, GDT's era: magic number, protocol,
system info, the pickle, the storage keys, then each storage as an int64 count and raw bytes).

Names map by rule (torchvision → here): stem.0/1/3/4 → stem_conv_s / stem_bn_s / stem_conv_t /
stem_bn_t; layerL.B.convC.0.{0,1,3} → layerL_B/convC/{spatial, mid_bn, temporal};
layerL.B.convC.1 → layerL_B/bnC; layerL.B.downsample.{0,1} → downsample_conv / downsample_bn.
Conv3d weights [out, in, t, h, w] become kernels [t, h, w, in, out]; BN weight/bias → scale/bias,
running_mean/var → batch_stats mean/var; num_batches_tracked and a classifier fc.* are dropped.
Every variable of the network must come from the file with its shape, else nothing is returned
and the error lists the differences.
"""

import collections
import functools
import io
import pickle
import re
import struct
import zipfile

import jax
import ml_dtypes
import numpy as np

from mmv.models import r2plus1d

_STORAGE_DTYPES = {
    'FloatStorage': np.float32, 'DoubleStorage': np.float64, 'HalfStorage': np.float16,
    'BFloat16Storage': ml_dtypes.bfloat16, 'LongStorage': np.int64, 'IntStorage': np.int32,
    'ShortStorage': np.int16, 'CharStorage': np.int8, 'ByteStorage': np.uint8,
    'BoolStorage': np.bool_,
}
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_LEGACY_PROTOCOL = 1001


class IncompatibleCheckpointError(ValueError):
  """The file does not hold an R(2+1)D-18 in torchvision's layout."""


class Opaque:
  """Stands in for any object the pickle would build with code it names (never run): the
  pickle gets a fresh subclass named after the global, whose instances keep their arguments
  and state as plain data."""
  name = '?'

  def __init__(self, *args, **kwargs):
    self.args, self.kwargs, self.state = args, kwargs, None

  def __setstate__(self, state):
    self.state = state

  def __repr__(self):
    return f'Opaque({self.name})'


def _opaque(name):
  return type('Opaque', (Opaque,), {'name': name})


class _Storage:

  def __init__(self, dtype, key, numel, view=None):
    self.dtype, self.key, self.numel, self.view = np.dtype(dtype), key, numel, view


class _Tensor:

  def __init__(self, storage, offset, size, stride):
    self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), stride


def _latin1(text, encoding):
  # Protocol 2 stores bytes as latin-1 text rebuilt by `_codecs.encode`.
  if encoding not in ('latin1', 'latin-1'):
    raise pickle.UnpicklingError(f'_codecs.encode with encoding {encoding!r}')
  return text.encode('latin-1')


class _TorchUnpickler(pickle.Unpickler):

  def __init__(self, f):
    super().__init__(f)
    self.dtypes = {}  # Every storage the pickle names, tensors' or not: key → dtype.

  def find_class(self, module, name):
    if module == 'torch' and name in _STORAGE_DTYPES:
      return _STORAGE_DTYPES[name]
    if (module, name) == ('torch._utils', '_rebuild_tensor_v2'):
      return lambda storage, offset, size, stride, *unused: _Tensor(storage, offset, size,
                                                                    stride)
    if (module, name) == ('torch._utils', '_rebuild_parameter'):
      return lambda data, *unused: data
    if (module, name) == ('collections', 'OrderedDict'):
      return collections.OrderedDict
    if (module, name) == ('_codecs', 'encode'):
      return _latin1
    return _opaque(f'{module}.{name}')

  def persistent_load(self, pid):
    # Zip: ('storage', type, key, location, numel); legacy adds view metadata (key, offset, n).
    if not (isinstance(pid, tuple) and pid and pid[0] == 'storage'):
      raise pickle.UnpicklingError(f'unknown persistent id {pid!r}')
    dtype = pid[1]
    if isinstance(dtype, type) and issubclass(dtype, Opaque):
      raise IncompatibleCheckpointError(f'unsupported storage type {dtype.name}')
    view = pid[5] if len(pid) > 5 else None
    self.dtypes[str(pid[2])] = np.dtype(dtype)
    return _Storage(dtype, str(pid[2]), pid[4], view)


def _zip_storages(archive, prefix, keys):
  if prefix + 'byteorder' in archive.namelist():
    if archive.read(prefix + 'byteorder').decode().strip() != 'little':
      raise IncompatibleCheckpointError('big-endian .pth files are not supported')
  return {k: archive.read(f'{prefix}data/{k}') for k in keys}


def _legacy_storages(f, dtypes):
  keys = pickle.Unpickler(f).load()
  out = {}
  for key in keys:
    (numel,) = struct.unpack('<q', f.read(8))
    if str(key) not in dtypes:
      raise IncompatibleCheckpointError(f'storage {key} is named by no object of the pickle')
    out[str(key)] = f.read(numel * dtypes[str(key)].itemsize)
  return out


def _collect(tree, found):
  if isinstance(tree, _Tensor):
    found.append(tree)
  elif isinstance(tree, dict):
    for v in tree.values():
      _collect(v, found)
  elif isinstance(tree, (list, tuple)):
    for v in tree:
      _collect(v, found)
  return found


def _array(t, raw):
  s = t.storage
  flat = np.frombuffer(raw[s.key], s.dtype)
  if s.view is not None:  # Legacy storage view: (view key, offset, size) into its root.
    flat = flat[s.view[1]:s.view[1] + s.view[2]]
  if not t.size:
    return flat[t.offset].copy()
  strides = tuple(st * s.dtype.itemsize for st in t.stride)
  return np.lib.stride_tricks.as_strided(flat[t.offset:], t.size, strides).copy()


def _resolve(tree, arrays):
  if isinstance(tree, _Tensor):
    return arrays[id(tree)]
  if isinstance(tree, dict):
    return type(tree)((k, _resolve(v, arrays)) for k, v in tree.items())
  if isinstance(tree, (list, tuple)):
    return type(tree)(_resolve(v, arrays) for v in tree)
  return tree


def load_pth(path):
  """The contents of a torch.save file, tensors as numpy arrays, other objects as `Opaque`."""
  if zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as archive:
      pkl = [n for n in archive.namelist() if n.endswith('/data.pkl') or n == 'data.pkl']
      if len(pkl) != 1:
        raise IncompatibleCheckpointError(f'{path}: a zip archive without one data.pkl')
      prefix = pkl[0][:-len('data.pkl')]
      tree = _TorchUnpickler(io.BytesIO(archive.read(pkl[0]))).load()
      tensors = _collect(tree, [])
      raw = _zip_storages(archive, prefix, {t.storage.key for t in tensors})
  else:
    with open(path, 'rb') as f:
      header = [pickle.Unpickler(f).load() for _ in range(2)]
      if header != [_LEGACY_MAGIC, _LEGACY_PROTOCOL]:
        raise IncompatibleCheckpointError(f'{path} is neither a zip nor a legacy torch.save file')
      pickle.Unpickler(f).load()  # System info (byte order, type sizes): plain data.
      unpickler = _TorchUnpickler(f)
      tree = unpickler.load()
      tensors = _collect(tree, [])
      raw = _legacy_storages(f, unpickler.dtypes)
  return _resolve(tree, {id(t): _array(t, raw) for t in tensors})


def state_dict(tree):
  """The torchvision R(2+1)D state dict in a loaded checkpoint, its prefix stripped."""
  for key in ('state_dict', 'model'):
    if isinstance(tree, dict) and isinstance(tree.get(key), dict):
      tree = tree[key]
      break
  anchors = [k for k in tree if isinstance(k, str) and k.endswith('stem.0.weight')]
  if len(anchors) != 1:
    raise IncompatibleCheckpointError(
        f'expected one R(2+1)D stem (*stem.0.weight) in the state dict, found {anchors}')
  prefix = anchors[0][:-len('stem.0.weight')]
  return {k[len(prefix):]: v for k, v in tree.items() if k.startswith(prefix)}


_BLOCK = re.compile(
    r'layer([1-4])\.([01])\.(?:conv([12])\.(?:0\.([013])|1)|downsample\.([01]))$')
_STEM = {'0': 'stem_conv_s', '1': 'stem_bn_s', '3': 'stem_conv_t', '4': 'stem_bn_t'}
_CONV_PART = {'0': 'spatial', '1': 'mid_bn', '3': 'temporal'}


def _module_path(module):
  """torchvision module name (without the leaf) → path of the Flax module here."""
  if module.startswith('stem.') and module[5:] in _STEM:
    return (_STEM[module[5:]],)
  m = _BLOCK.match(module)
  if not m:
    raise IncompatibleCheckpointError(f'unexpected tensor {module!r}: not an R(2+1)D-18 name')
  stage, block, conv, part, down = m.groups()
  top = f'layer{stage}_{block}'
  if down is not None:
    return (top, 'downsample_conv' if down == '0' else 'downsample_bn')
  return (top, f'conv{conv}', _CONV_PART[part]) if part is not None else (top, f'bn{conv}')


def to_variables(sd):
  """torchvision state dict (prefix stripped) → {'params', 'batch_stats'} nested dicts."""
  out = {'params': {}, 'batch_stats': {}}
  for name, value in sd.items():
    module, leaf = name.rsplit('.', 1)
    if leaf == 'num_batches_tracked' or module == 'fc':
      continue
    path = _module_path(module)
    value = np.asarray(value, np.float32)
    if leaf == 'weight' and value.ndim == 5:
      collection, leaf, value = 'params', 'kernel', value.transpose(2, 3, 4, 1, 0)
    else:
      collection, leaf = {'weight': ('params', 'scale'), 'bias': ('params', 'bias'),
                          'running_mean': ('batch_stats', 'mean'),
                          'running_var': ('batch_stats', 'var')}[leaf]
    node = out[collection]
    for p in path:
      node = node.setdefault(p, {})
    node[leaf] = value
  return out


def _flat(tree):
  return {'/'.join(k.key for k in path): leaf
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def read_backbone(path, width_multiplier=1.0):
  """{'params', 'batch_stats'} of `R2Plus1D18` from a .pth file, checked against its shapes."""
  variables = to_variables(state_dict(load_pth(path)))
  net = r2plus1d.R2Plus1D18(width_multiplier=width_multiplier)
  x = jax.ShapeDtypeStruct((1, 4, 16, 16, 3), np.float32)
  expected = _flat(jax.eval_shape(functools.partial(net.init, train=False), jax.random.key(0),
                                  x))
  got = _flat(variables)
  missing = sorted(set(expected) - set(got))
  extra = sorted(set(got) - set(expected))
  shapes = sorted(k for k in set(got) & set(expected) if got[k].shape != expected[k].shape)
  if missing or extra or shapes:
    raise IncompatibleCheckpointError(
        f'{path} does not fit R(2+1)D-18: missing {missing[:5]} ({len(missing)}), unexpected '
        f'{extra[:5]} ({len(extra)}), other shapes {shapes[:5]} ({len(shapes)})')
  return variables
