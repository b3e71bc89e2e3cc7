"""Loading pickled checkpoints without running code from the file.

A pickle names the functions that rebuild its objects and `pickle.load` calls them, so a pickle
can run anything (`os.system`, ...). This unpickler resolves only an allow-list: what numpy
needs to rebuild arrays, dtypes and scalars, and `OrderedDict`; dicts, lists, tuples, strings and
numbers need no lookup. Any other name is refused before anything is called, with an error
naming it. Object arrays are refused too: their items would not be weights. A file that is not
a pickle at all (a text file, a zip archive such as an .npz, random bytes) raises
`NotAPickleError`, one line.
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


def _allowed():
  table = {
      ('numpy', 'ndarray'): np.ndarray,
      ('numpy', 'dtype'): np.dtype,
      ('collections', 'OrderedDict'): collections.OrderedDict,
      ('_codecs', 'encode'): _latin1_encode,
  }
  for core in ('numpy.core', 'numpy._core'):
    table[(f'{core}.multiarray', '_reconstruct')] = _reconstruct
    table[(f'{core}.multiarray', 'scalar')] = _numpy_private(f'{core}.multiarray', 'scalar')
    table[(f'{core}.numeric', '_frombuffer')] = _numpy_private(f'{core}.numeric', '_frombuffer')
  return table


class _AllowListUnpickler(pickle.Unpickler):

  _ALLOWED = _allowed()

  def find_class(self, module, name):
    if (module, name) not in self._ALLOWED:
      raise UnsafePickleError(
          f'refusing to load {module}.{name}: this file would call it while unpickling. Only '
          'numpy arrays in plain containers are accepted; re-save the checkpoint as nested '
          'dicts of numpy arrays (e.g. jax.device_get + dict) if it holds other types.')
    return self._ALLOWED[(module, name)]


def _check_leaves(tree, where='checkpoint'):
  if isinstance(tree, dict):
    for k, v in tree.items():
      _check_leaves(v, f'{where}[{k!r}]')
  elif isinstance(tree, (list, tuple)):
    for i, v in enumerate(tree):
      _check_leaves(v, f'{where}[{i}]')
  elif isinstance(tree, (np.ndarray, np.generic)) and tree.dtype.kind == 'O':
    raise UnsafePickleError(f'{where} is an object array')


def load(path):
  """The unpickled contents of `path`, refusing anything but numpy data in plain containers."""
  with open(path, 'rb') as f:
    try:
      tree = _AllowListUnpickler(f).load()
    except UnsafePickleError:
      raise
    except _NOT_A_PICKLE as e:
      what = ('a zip archive (an .npz or a PyTorch file?)' if zipfile.is_zipfile(path)
              else ' '.join(str(e).split())[:200] or type(e).__name__)
      raise NotAPickleError(f'{path} is not a pickle: {what}') from None
  _check_leaves(tree)
  return tree
