"""Pickles written as DeepMind's released MMV checkpoints were, without haiku, jax or dill.

The release files (December 2020) were written with `dill` 0.3.3 from the Haiku and jax of the
time, and read back with `dill.load` (deepmind-research mmv/utils/checkpoint.py). What a pickle
holds is what each class's `__reduce__` and the pickler's dispatch write, so stand-ins that
reduce as the originals did write the same opcodes:

- `FlatMapping`: Haiku 0.0.3 (and its master until 2021) haiku/_src/data_structures.py,
  `def __reduce__(self): return FlatMapping, (self._to_mapping(),)`, the mapping a dict whose
  values are the nested FlatMappings; `frozendict`, Haiku 0.0.2's container,
  `return (frozendict, (self._storage,))`. Registered as `haiku._src.data_structures` while a
  file is written, as pickling by reference needs.
- `DeviceArray`: jax 0.2.7 jax/interpreters/xla.py, "pickle saves and loads just like an
  ndarray": `setattr(device_array, "__reduce__", partialmethod(_forward_to_value,
  op.methodcaller("__reduce__")))`; its class is not in the file.
- `Dill033Pickler`: dill 0.3.3's Pickler is the pure-Python `pickle._Pickler` whose dispatch
  writes a C function `f` of a module `m` as `_get_attr(m, f.__name__)`
  (`save_builtin_method`) and an extension module as `_import_module(m.__name__)`
  (`save_module`, case M2); dicts and classes as pickle does. Once an ndarray was dumped on its
  own, `Pickler.dump` has registered `save_numpy_array` for every later ndarray in the process:
  `_create_array(f, args, state, None)` of the array's `__reduce__` (`after_an_array=True`).
  Numpy is named as numpy 1.19 (December 2020) named it: `numpy.core._multiarray_umath`.
  Checked once against dill 0.3.3 itself (its source at tag dill-0.3.3, numpy's module name
  left as is): the same bytes for protocols 2, 3 and 4, FlatMapping or frozendict, DeviceArrays
  or ndarrays, before and after an array was dumped on its own.
"""

import builtins
import collections.abc
import contextlib
import functools
import io
import operator
import pickle
import pickletools
import sys
import types

import numpy as np

HAIKU = 'haiku._src.data_structures'


class FlatMapping(collections.abc.Mapping):
  """Haiku 0.0.3's FlatMapping, as far as pickling goes."""

  def __init__(self, *args, **kwargs):
    self._mapping = dict(*args, **kwargs)

  def __getitem__(self, key):
    return self._mapping[key]

  def __iter__(self):
    return iter(self._mapping)

  def __len__(self):
    return len(self._mapping)

  def __reduce__(self):
    return FlatMapping, (self._mapping,)


class frozendict(FlatMapping):  # pylint: disable=invalid-name
  """Haiku 0.0.2's frozendict, as far as pickling goes."""

  def __reduce__(self):
    return frozendict, (self._mapping,)


class FrozenList(list):
  """Haiku 0.0.2's FrozenList (no parameter container), as far as pickling goes."""

  def __reduce__(self):
    return type(self), (list(self),)


def _forward_method(attrname, self, fun, *args):
  return fun(getattr(self, attrname), *args)


_forward_to_value = functools.partial(_forward_method, '_value')


class DeviceArray:
  """jax 0.2.7's `_DeviceArray`, as far as pickling goes: `__reduce__` is its value's."""
  __slots__ = ('_npy_value',)

  def __init__(self, value):
    self._npy_value = np.array(value)
    self._npy_value.flags.writeable = False  # As jax's `_value`.

  @property
  def _value(self):
    return self._npy_value

  __reduce__ = functools.partialmethod(_forward_to_value, operator.methodcaller('__reduce__'))


def _get_attr(self, name):
  raise AssertionError('the loader called dill._dill._get_attr of the file')


def _import_module(import_name, safe=False):
  raise AssertionError('the loader called dill._dill._import_module of the file')


def _create_array(f, args, state, npdict=None):
  raise AssertionError('the loader called dill._dill._create_array of the file')


def _module(name, **members):
  module = types.ModuleType(name)
  for member_name, member in members.items():
    member.__module__, member.__qualname__ = name, member_name
    setattr(module, member_name, member)
  return module


def _stand_in_modules(**haiku_members):
  haiku_members = {'FlatMapping': FlatMapping, 'frozendict': frozendict, **haiku_members}
  return {'haiku': _module('haiku'), 'haiku._src': _module('haiku._src'),
          HAIKU: _module(HAIKU, **haiku_members),
          'dill': _module('dill'),
          'dill._dill': _module('dill._dill', _get_attr=_get_attr, _import_module=_import_module,
                                _create_array=_create_array)}


@contextlib.contextmanager
def stand_ins(**haiku_members):
  """`haiku._src.data_structures` (with `haiku_members` added or replaced) and `dill._dill`
  importable, as the stand-ins above."""
  modules = _stand_in_modules(**haiku_members)
  saved = {name: sys.modules.get(name) for name in modules}
  sys.modules.update(modules)
  try:
    yield
  finally:
    for name, module in saved.items():
      if module is None:
        del sys.modules[name]
      else:
        sys.modules[name] = module


def numpy_1_name(module_name):
  return module_name.replace('numpy._core', 'numpy.core')


class Dill033Pickler(pickle._Pickler):  # pylint: disable=protected-access
  """What dill 0.3.3's Pickler writes for dicts, classes, numpy arrays and numpy's functions."""

  def __init__(self, file, protocol, after_an_array=False):
    super().__init__(file, protocol)
    self.dispatch = {**pickle._Pickler.dispatch,  # pylint: disable=protected-access
                     types.BuiltinFunctionType: Dill033Pickler.save_builtin_method,
                     types.ModuleType: Dill033Pickler.save_module}
    if after_an_array:
      self.dispatch[np.ndarray] = Dill033Pickler.save_numpy_array

  def save_builtin_method(self, obj):
    module = 'builtins' if obj.__self__ is builtins else obj.__self__  # Case B1, else B3.
    self.save_reduce(sys.modules['dill._dill']._get_attr, (module, obj.__name__), obj=obj)

  def save_module(self, obj):
    self.save_reduce(sys.modules['dill._dill']._import_module, (numpy_1_name(obj.__name__),),
                     obj=obj)

  def save_numpy_array(self, obj):
    f, args, state = obj.__reduce__()
    self.save_reduce(sys.modules['dill._dill']._create_array, (f, args, state, None), obj=obj)


def release(tree, container=FlatMapping, array=DeviceArray):
  """`{'params': ..., 'state': ...}` of {module: {name: numpy array}} trees, in Haiku's
  containers and jax's arrays, as the release code held them."""
  return {collection: container({module: container({name: array(value)
                                                    for name, value in leaves.items()})
                                 for module, leaves in modules.items()})
          for collection, modules in tree.items()}


def dumps(obj, writer='dill', protocol=4, after_an_array=False, **haiku_members):
  """The bytes of `obj` pickled by dill 0.3.3 (`writer='dill'`) or by `pickle.dumps`."""
  with stand_ins(**haiku_members):
    if writer == 'pickle':
      return pickle.dumps(obj, protocol=protocol)
    out = io.BytesIO()
    Dill033Pickler(out, protocol, after_an_array).dump(obj)
    return out.getvalue()


def referenced(data):
  """{(module, name)} of every global the pickle `data` looks up."""
  pushed, memo, found = [], {}, set()  # Strings pushed (None for anything else), the memo.
  for opcode, arg, _ in pickletools.genops(data):
    if opcode.name in ('SHORT_BINUNICODE', 'BINUNICODE', 'UNICODE'):
      pushed.append(arg)
    elif opcode.name == 'MEMOIZE':
      memo[len(memo)] = pushed[-1]
    elif opcode.name in ('PUT', 'BINPUT', 'LONG_BINPUT'):
      memo[arg] = pushed[-1]
    elif opcode.name in ('GET', 'BINGET', 'LONG_BINGET'):
      pushed.append(memo[arg])
    elif opcode.name == 'STACK_GLOBAL':
      found.add(tuple(pushed[-2:]))
      pushed.append(None)
    elif opcode.name in ('GLOBAL', 'INST'):
      found.add(tuple(arg.split(' ', 1)))
      pushed.append(None)
    else:
      pushed.append(None)
  return found
