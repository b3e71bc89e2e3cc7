"""Loading pickled checkpoints without running code from the file.

A pickle names the functions that rebuild its objects and `pickle.load` calls them, so a pickle
can run anything (`os.system`, ...). This unpickler resolves only an allow-list: what numpy
needs to rebuild arrays, dtypes and scalars, and `OrderedDict`; dicts, lists, tuples, strings and
numbers need no lookup. Any other name is refused before anything is called, with an error
naming it. Object arrays are refused too: their items would not be weights. A file that is not
a pickle at all (a text file, a zip archive such as an .npz, random bytes) raises
`NotAPickleError`, one line.

DeepMind's released MMV checkpoints are read as they were written (December 2020: `dill` 0.3.3
on the Haiku and jax of that time), by stand-ins that rebuild plain data and import nothing:

- Haiku's `FlatMapping` (and `frozendict`, the container it replaced in August 2020) reduce to
  `haiku._src.data_structures.FlatMapping(a_dict)`: that dict is what loads.
- A jax `DeviceArray` (and `ShardedDeviceArray`) reduces to the numpy array it holds
  (`__reduce__` forwarded to its `_value`), so the file names numpy only.
- dill writes numpy's C functions as `dill._dill._get_attr(dill._dill._import_module(
  'numpy.core._multiarray_umath'), '_reconstruct')`, and an array as
  `dill._dill._create_array(_reconstruct, args, state, None)` once an array was dumped on its
  own in that process: both resolve to the allow-list above and refuse anything else.
"""

import collections
import importlib
import pickle
import zipfile

import numpy as np


class UnsafePickleError(pickle.UnpicklingError):
  """The pickle refers to something outside the allow-list."""


class NotAPickleError(pickle.UnpicklingError):
  """The file is not a pickle (or is cut short)."""


# What unpickling bytes that are not a pickle raises (besides UnpicklingError): a bad protocol
# number or string (ValueError, UnicodeDecodeError), a length field read from garbage
# (OverflowError, MemoryError), an opcode without its operands (EOFError, IndexError, KeyError,
# TypeError, AttributeError).
_NOT_A_PICKLE = (pickle.UnpicklingError, EOFError, ValueError, OverflowError, MemoryError,
                 IndexError, KeyError, TypeError, AttributeError)
_HAIKU = 'haiku._src.data_structures'
_DILL = 'dill._dill'


def _numpy_private(module, name):
  # Pickles from numpy 1.x name `numpy.core.*`, numpy 2.x `numpy._core.*`: same functions.
  return getattr(importlib.import_module(module.replace('numpy.core', 'numpy._core')), name)


def _reconstruct(cls, *args):
  if cls is not np.ndarray:
    raise UnsafePickleError(f'refusing an array of class {cls!r}')
  return _numpy_private('numpy._core.multiarray', '_reconstruct')(cls, *args)


def _latin1_encode(text, encoding):
  # Protocol 2 stores bytes as latin-1 text rebuilt by `_codecs.encode`.
  if encoding not in ('latin1', 'latin-1'):
    raise UnsafePickleError(f'refusing _codecs.encode with encoding {encoding!r}')
  return text.encode('latin-1')


class _HaikuMapping:
  """Haiku's FlatMapping / frozendict, read as the dict their `__reduce__` gives.

  A class, so that a file rebuilding one some other way (NEWOBJ: no arguments) is refused here
  too, by name.
  """

  def __new__(cls, *args, **kwargs):
    if kwargs or len(args) != 1 or type(args[0]) is not dict:
      raise UnsafePickleError(
          f'refusing a Haiku FlatMapping or frozendict rebuilt from {len(args)} argument(s) and '
          f'{len(kwargs)} keyword(s): Haiku pickles them as FlatMapping(a dict)')
    return args[0]


class _DillModule:
  """What `dill._dill._import_module(name)` gives here: the name, for `_dill_get_attr`."""

  def __init__(self, name):
    self.name = name

  def __repr__(self):
    return f'_import_module({self.name!r})'


def _dill_import_module(name):
  if not any(module == name for module, _ in _ALLOWED):
    raise UnsafePickleError(f'refusing to load {_DILL}._import_module({name!r}): only modules '
                            'on the allow-list (numpy\'s) are accepted')
  return _DillModule(name)


def _dill_get_attr(module, name):
  key = (getattr(module, 'name', None), name)
  if not isinstance(module, _DillModule) or key not in _ALLOWED:
    raise UnsafePickleError(f'refusing to load {_DILL}._get_attr({module!r}, {name!r}): only '
                            'names on the allow-list (numpy\'s) are accepted')
  return _ALLOWED[key]


def _dill_create_array(f, args, state, npdict=None):
  # dill 0.3.3's `_create_array`: `array = f(*args); array.__setstate__(state)`.
  if f is not _reconstruct or npdict is not None:
    raise UnsafePickleError(f'refusing {_DILL}._create_array with {f!r}: only numpy arrays '
                            '(numpy _reconstruct, no __dict__) are accepted')
  array = f(*args)
  array.__setstate__(state)
  return array


def _allowed():
  table = {
      ('numpy', 'ndarray'): np.ndarray,
      ('numpy', 'dtype'): np.dtype,
      ('collections', 'OrderedDict'): collections.OrderedDict,
      ('_codecs', 'encode'): _latin1_encode,
      (_HAIKU, 'FlatMapping'): _HaikuMapping,
      (_HAIKU, 'frozendict'): _HaikuMapping,
      (_DILL, '_import_module'): _dill_import_module,
      (_DILL, '_get_attr'): _dill_get_attr,
      (_DILL, '_create_array'): _dill_create_array,
  }
  for core in ('numpy.core', 'numpy._core'):
    scalar = _numpy_private(f'{core}.multiarray', 'scalar')
    # `.multiarray` is the name plain pickles give; dill names the C module that defines them.
    for module in (f'{core}.multiarray', f'{core}._multiarray_umath'):
      table[(module, '_reconstruct')] = _reconstruct
      table[(module, 'scalar')] = scalar
    table[(f'{core}.numeric', '_frombuffer')] = _numpy_private(f'{core}.numeric', '_frombuffer')
  return table


_ALLOWED = _allowed()


class _AllowListUnpickler(pickle.Unpickler):

  def find_class(self, module, name):
    if (module, name) not in _ALLOWED:
      raise UnsafePickleError(
          f'refusing to load {module}.{name}: this file would call it while unpickling. Only '
          'numpy arrays in dicts, lists and tuples are accepted (and DeepMind\'s released '
          'checkpoints as written: Haiku mappings, jax arrays, dill); re-save other types as '
          'nested dicts of numpy arrays.')
    return _ALLOWED[(module, name)]


def _check_leaves(tree, where='checkpoint'):
  if isinstance(tree, dict):
    for k, v in tree.items():
      _check_leaves(v, f'{where}[{k!r}]')
  elif isinstance(tree, (list, tuple)):
    for i, v in enumerate(tree):
      _check_leaves(v, f'{where}[{i}]')
  elif isinstance(tree, (np.ndarray, np.generic)) and tree.dtype.hasobject:
    raise UnsafePickleError(f'{where} is an object array')


def _unpickle(f, path):
  try:
    return _AllowListUnpickler(f).load()
  except UnsafePickleError:
    raise
  except _NOT_A_PICKLE as e:
    what = ('a zip archive (an .npz or a PyTorch file?)' if zipfile.is_zipfile(path)
            else ' '.join(str(e).split())[:200] or type(e).__name__)
    raise NotAPickleError(f'{path} is not a pickle: {what}') from None


def load(path):
  """The unpickled contents of `path`, refusing anything but numpy data in plain containers."""
  with open(path, 'rb') as f:
    tree = _unpickle(f, path)
  _check_leaves(tree)
  return tree


def load_npy_object(path):
  """The object that `np.save(path, obj)` stored for a non-array `obj` (e.g. a dict), read
  without running code: such a .npy is a header for a 0-d object array, then a pickle of that
  array, which `np.load(allow_pickle=True)` would unpickle with no allow-list. Here the pickle
  goes through the allow-list, and its one item must hold numpy data in plain containers."""
  with open(path, 'rb') as f:
    try:
      version = np.lib.format.read_magic(f)
      read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                     (2, 0): np.lib.format.read_array_header_2_0}[version]
      shape, _, dtype = read_header(f)
    except (ValueError, KeyError, EOFError) as e:
      raise NotAPickleError(f'{path} is not a .npy file of version 1.0 or 2.0: '
                            f'{" ".join(str(e).split())[:200]}') from None
    if shape != () or dtype != np.dtype(object):
      raise NotAPickleError(f'{path} holds an array of shape {shape} and dtype {dtype}, not one '
                            'pickled object (np.save of a dict)')
    array = _unpickle(f, path)
  if not (isinstance(array, np.ndarray) and array.shape == () and array.dtype.hasobject):
    raise NotAPickleError(f'{path}: the pickle after the .npy header is not a 0-d object array')
  tree = array.item()
  _check_leaves(tree)
  return tree
