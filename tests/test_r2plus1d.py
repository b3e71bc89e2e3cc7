"""R(2+1)D-18 against torchvision's network (recorded by tests/data/make_r2plus1d_fixture.py) and
the .pth reader of mmv.tools.torchvision_checkpoint."""

import functools
import math
import os
import pickle
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmv.models import mmv as mmv_model
from mmv.models import r2plus1d
from mmv.tools import torchvision_checkpoint as tvc
from tests.data import make_r2plus1d_fixture as fixture_lib

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')


def _fixture():
  f = np.load(os.path.join(DATA, 'r2plus1d_fixture.npz'))
  shapes = np.split(f['dims'], np.cumsum(f['ndims'])[:-1])
  names = [str(n) for n in f['names']]
  return f, fixture_lib.reference_weights(names, shapes)


def _expected_params():
  """Parameters of torchvision's r2plus1d_18 without fc, counted from its definition."""
  bn = lambda c: 2 * c
  total = 3 * 45 * 1 * 7 * 7 + bn(45) + 45 * 64 * 3 + bn(64)  # Stem.
  n_in = 64
  for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
    for i in range(2):
      cin = n_in if i == 0 else width
      m = cin * width * 27 // (9 * cin + 3 * width)  # Once per block, both convs use it.
      conv1 = cin * m * 9 + bn(m) + m * width * 3
      conv2 = width * m * 9 + bn(m) + m * width * 3
      total += conv1 + bn(width) + conv2 + bn(width)
      if i == 0 and (stride != 1 or cin != width):
        total += cin * width + bn(width)
    n_in = width
  return total


def test_parameter_count_is_torchvisions():
  net = mmv_model.VIDEO_BACKBONES['r2plus1d_18']()
  x = jax.ShapeDtypeStruct((1, 8, 112, 112, 3), jnp.float32)
  variables = jax.eval_shape(functools.partial(net.init, train=False), jax.random.key(0), x)
  count = sum(math.prod(p.shape) for p in jax.tree.leaves(variables['params']))
  assert count == _expected_params() == 31_300_125
  out = jax.eval_shape(functools.partial(net.apply, train=False), variables, x)
  assert out.shape == (1, 512) == (1, net.output_dim)


@pytest.mark.slow
@pytest.mark.parametrize('train', [False, True])
def test_features_equal_torchvisions(train):
  f, weights = _fixture()
  variables = tvc.to_variables(weights)
  x = jnp.asarray(f['input'].transpose(0, 2, 3, 4, 1))  # NCTHW → NTHWC.
  net = r2plus1d.R2Plus1D18()
  if train:
    out, _ = net.apply(variables, x, train=True, mutable=['batch_stats'])
    expected = f['train_features']
  else:
    out = net.apply(variables, x, train=False)
    expected = f['eval_features']
  np.testing.assert_allclose(out, expected, rtol=2e-4, atol=2e-4 * np.abs(expected).max())


@pytest.mark.parametrize('layout', ['zip', 'legacy'])
def test_pth_files_are_read_as_torch_wrote_them(layout):
  _, weights = _fixture()
  tree = tvc.load_pth(os.path.join(DATA, f'r2plus1d_stem_{layout}.pth'))
  assert tree['epoch'] == 201
  assert isinstance(tree['args'], tvc.Opaque) and tree['args'].name == 'argparse.Namespace'
  assert tree['args'].state == {'lr': 0.01, 'hypothesis': 1}
  sd = tvc.state_dict(tree)
  stem = {k: v for k, v in weights.items() if k.startswith('stem.')}
  assert sorted(sd) == sorted(stem)
  for k, v in stem.items():
    assert sd[k].dtype == v.dtype and np.array_equal(sd[k], v), k
  with pytest.raises(tvc.IncompatibleCheckpointError, match=r'missing .*layer1_0'):
    tvc.read_backbone(os.path.join(DATA, f'r2plus1d_stem_{layout}.pth'))


def test_unknown_names_are_refused():
  _, weights = _fixture()
  with pytest.raises(tvc.IncompatibleCheckpointError, match='layer5'):
    tvc.to_variables({**weights, 'layer5.0.conv1.0.0.weight': np.zeros((1, 1, 1, 1, 1))})
  # A classifier is dropped: GDT replaces it by an identity, torchvision's own files have it.
  with_fc = tvc.to_variables({**weights, 'fc.weight': np.zeros((400, 512)),
                              'fc.bias': np.zeros(400)})
  assert 'fc' not in with_fc['params']


class _Payload:

  def __init__(self, path):
    self.path = path

  def __reduce__(self):
    return (os.system, (f'touch {self.path}',))


def test_nothing_the_file_names_is_called(tmp_path):
  marker = tmp_path / 'ran'
  path = tmp_path / 'evil.pth'
  with open(path, 'wb') as f:  # The legacy layout: magic, protocol, system info, pickle, keys.
    for obj in (0x1950a86a20f9469cfc6c, 1001, {'little_endian': True},
                {'model': _Payload(marker)}, []):
      pickle.dump(obj, f, protocol=2)
  tree = tvc.load_pth(str(path))
  assert not marker.exists()
  assert isinstance(tree['model'], tvc.Opaque) and tree['model'].name == 'posix.system'
  # Not a torch.save file at all.
  bad = tmp_path / 'bad.pth'
  bad.write_bytes(struct.pack('<q', 7) + b'garbage')
  with pytest.raises((tvc.IncompatibleCheckpointError, pickle.UnpicklingError)):
    tvc.load_pth(str(bad))
