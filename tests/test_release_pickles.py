"""The allow-list loader on pickles written as DeepMind's release files were (`dill` 0.3.3,
Haiku's FlatMapping, jax's DeviceArray; see tests/release_pickles.py), and on what it must still
refuse."""

import copyreg
import os
import sys

import numpy as np
import pytest

from mmv.tools import safe_pickle
from tests import release_pickles as written

NUMPY_1 = 'numpy.core._multiarray_umath'


def _tree():
  """A release's {'params', 'state'} {module: {name: array}}, as numpy arrays."""
  rng = np.random.default_rng(0)
  module = 'text_audio_video/audio_module/~/res_net_v2/~/initial_conv'
  ema = 'text_audio_video/audio_module/~/res_net_v2/__cross_replica_batch_norm/~/mean_ema'
  return {'params': {module: {'w': rng.standard_normal((7, 7, 1, 4)).astype(np.float32)}},
          'state': {ema: {'average': rng.standard_normal((1, 4)).astype(np.float32),
                          'hidden': rng.standard_normal((1, 4)).astype(np.float32),
                          'counter': np.array(rng.integers(1, 99), np.int32)}}}


def _load(tmp_path, data):
  path = tmp_path / 'release.pkl'
  path.write_bytes(data)
  return safe_pickle.load(str(path))


@pytest.mark.parametrize('writer,protocol,container,array,after_an_array', [
    # dill 0.3.3's default protocol: pickle.DEFAULT_PROTOCOL, 4 on Python 3.8, 3 on 3.6 / 3.7.
    ('dill', 4, written.FlatMapping, written.DeviceArray, False),
    ('dill', 3, written.FlatMapping, written.DeviceArray, False),
    ('dill', 2, written.frozendict, np.asarray, False),  # Bytes as _codecs.encode, via dill.
    ('dill', 4, written.FlatMapping, np.asarray, True),  # _create_array.
    ('dill', 4, dict, np.asarray, False),  # Re-saved as plain data, by dill.
    ('pickle', 4, written.FlatMapping, written.DeviceArray, False),
    ('pickle', 5, written.frozendict, written.DeviceArray, False),
])
def test_the_release_as_written_loads_as_dicts_of_numpy_arrays(
    tmp_path, writer, protocol, container, array, after_an_array):
  tree = _tree()
  data = written.dumps(written.release(tree, container, array), writer, protocol,
                       after_an_array)
  refs = written.referenced(data)
  assert ((written.HAIKU, container.__name__) in refs) == (container is not dict)
  assert not any('jax' in module for module, _ in refs)  # DeviceArray pickles as numpy.
  if writer == 'dill':
    assert {('dill._dill', '_get_attr'), ('dill._dill', '_import_module')} <= refs
    assert NUMPY_1.encode() in data  # _get_attr(_import_module(NUMPY_1), '_reconstruct').
  assert (('dill._dill', '_create_array') in refs) == after_an_array

  before = set(sys.modules)
  loaded = _load(tmp_path, data)
  assert not [m for m in set(sys.modules) - before if m.split('.')[0] in ('haiku', 'dill', 'jax')]
  with written.stand_ins():  # Importable now: still not called (dill's raise if called).
    assert _load(tmp_path, data).keys() == loaded.keys()

  assert type(loaded) is dict and loaded.keys() == tree.keys()
  for collection, modules in tree.items():
    assert type(loaded[collection]) is dict and loaded[collection].keys() == modules.keys()
    for module, leaves in modules.items():
      assert type(loaded[collection][module]) is dict
      assert loaded[collection][module].keys() == leaves.keys()
      for name, value in leaves.items():
        got = loaded[collection][module][name]
        assert type(got) is np.ndarray and got.dtype == value.dtype, (module, name)
        np.testing.assert_array_equal(got, value)


class _Calls:
  """Unpickling this calls `fn(*args)`: what a malicious checkpoint would do. A string `fn`
  names a helper of dill's, the stand-in registered while pickling."""

  def __init__(self, fn, *args):
    self.fn, self.args = fn, args

  def __reduce__(self):
    if isinstance(self.fn, str):
      return getattr(sys.modules['dill._dill'], self.fn), self.args
    return self.fn, self.args


class _Odd(written.FlatMapping):
  """A FlatMapping that reduces as the given function of itself (registered in its place)."""
  reduce = None

  def __reduce__(self):
    return type(self).reduce(self)


def _odd_flat_mapping(reduce):
  return type('FlatMapping', (_Odd,), {'reduce': staticmethod(reduce)})


W = np.zeros(2, np.float32)
SCALAR = np.int32(1).__reduce__()[0]  # numpy's `scalar`, allowed on its own.


@pytest.mark.parametrize('what,match', [
    # dill writes a C function `f` of module `m` as _get_attr(_import_module(m), f.__name__), and
    # one of builtins as _get_attr('builtins', name).
    pytest.param(lambda marker: _Calls(os.system, f'touch {marker}'),
                 r"_import_module\('posix'\): only modules on the allow-list",
                 id='os.system'),
    pytest.param(lambda marker: _Calls(eval, f'open({str(marker)!r}, "w")'),
                 r"_get_attr\('builtins', 'eval'\): only names on the allow-list",
                 id='builtins.eval'),
    pytest.param(lambda marker: _Calls(np.empty, 3),  # numpy's C module, not an allowed name.
                 rf"_get_attr\(_import_module\('{NUMPY_1}'\), 'empty'\)", id='numpy.empty'),
    # dill's _create_array of anything but numpy's _reconstruct, or with an instance __dict__.
    pytest.param(
        lambda marker: _Calls('_create_array', SCALAR, (np.dtype('i4'), b'1234'), None, None),
        r'refusing dill\._dill\._create_array with', id='_create_array-of-scalar'),
    pytest.param(lambda marker: _Calls('_create_array', *W.__reduce__(), {'x': 1}),
                 r'refusing dill\._dill\._create_array with', id='_create_array-with-dict'),
    # Another class of Haiku's module (FrozenList reduces as `type(self), (list(self),)`), and
    # a FlatMapping rebuilt otherwise than from one dict.
    pytest.param(lambda marker: {'w': written.FrozenList([W])},
                 r'refusing to load haiku\._src\.data_structures\.FrozenList', id='FrozenList'),
    pytest.param(
        lambda marker: _odd_flat_mapping(lambda self: (type(self), (list(self.items()),)))(w=W),
        r'FlatMapping or frozendict rebuilt from 1 argument\(s\)', id='FlatMapping-of-pairs'),
    pytest.param(
        lambda marker: _odd_flat_mapping(lambda self: (type(self), (dict(self), 'x')))(w=W),
        r'FlatMapping or frozendict rebuilt from 2 argument\(s\)', id='FlatMapping-of-two'),
    pytest.param(
        lambda marker: _odd_flat_mapping(lambda self: (copyreg.__newobj__, (type(self),)))(w=W),
        r'FlatMapping or frozendict rebuilt from 0 argument\(s\)', id='FlatMapping-by-NEWOBJ'),
])
def test_what_the_release_does_not_hold_is_still_refused(tmp_path, what, match):
  marker = tmp_path / 'ran'
  obj = what(marker)
  haiku_members = {'FrozenList': written.FrozenList}
  if isinstance(obj, _Odd):
    haiku_members['FlatMapping'] = type(obj)
  data = written.dumps({'params': obj, 'state': {}}, 'dill', 4, **haiku_members)
  with pytest.raises(safe_pickle.UnsafePickleError, match=match) as raised:
    _load(tmp_path, data)
  assert '\n' not in str(raised.value)
  assert not marker.exists()


def test_a_class_of_jax_is_refused(tmp_path):
  # A DeviceArray pickled by class (NEWOBJ of jax.interpreters.xla._DeviceArray), not as numpy.
  data = b'\x80\x02cjax.interpreters.xla\n_DeviceArray\n)\x81.'
  with pytest.raises(safe_pickle.UnsafePickleError,
                     match=r'refusing to load jax\.interpreters\.xla\._DeviceArray'):
    _load(tmp_path, data)
