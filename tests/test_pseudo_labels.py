"""The per-round pseudo-label files of XDC (mmv.pseudo_labels)."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from mmv import pseudo_labels


def _round(n=50, k=7, seed=0):
  rng = np.random.default_rng(seed)
  keys = rng.choice(2**62, n, replace=False).astype(np.int64) - 2**61
  labels = {'audio': rng.integers(-1, k, n), 'video': rng.integers(0, k, n)}
  centroids = {name: rng.normal(size=(k, 4)).astype(np.float32) for name in labels}
  return dict(keys=keys, labels=labels, centroids=centroids)


def test_a_round_is_written_whole_and_read_back(tmp_path):
  workdir = str(tmp_path)
  data = _round()
  assert pseudo_labels.load(workdir, 3) is None
  path = pseudo_labels.save(workdir, 3, step=300, settings={'k': 7}, **data)
  assert path == os.path.join(workdir, 'xdc', 'round_0003.npz')
  assert os.listdir(os.path.join(workdir, 'xdc')) == ['round_0003.npz']  # No partial file left.
  loaded = pseudo_labels.load(workdir, 3, step=300, settings={'k': 7})
  assert (loaded.index, loaded.step, loaded.settings) == (3, 300, {'k': 7})
  np.testing.assert_array_equal(loaded.keys, data['keys'])
  for name in ('audio', 'video'):
    np.testing.assert_array_equal(loaded.labels[name], data['labels'][name])
    np.testing.assert_array_equal(loaded.centroids[name], data['centroids'][name])
  # A file that does not fit the run is an error, not used.
  with pytest.raises(ValueError, match='starts at step 300, but round 3 starts at step 30'):
    pseudo_labels.load(workdir, 3, step=30)
  with pytest.raises(ValueError, match='made with other settings'):
    pseudo_labels.load(workdir, 3, settings={'k': 8})


def test_never_written_over_and_partial_files_are_not_rounds(tmp_path):
  workdir = str(tmp_path)
  path = pseudo_labels.round_path(workdir, 0)
  os.makedirs(os.path.dirname(path))
  with open(path, 'wb') as f:
    f.write(b'a file of the user')
  with pytest.raises(FileExistsError, match='never written over'):
    pseudo_labels.save(workdir, 0, step=0, settings={}, **_round())
  with open(path, 'rb') as f:
    assert f.read() == b'a file of the user'
  # A writer killed before its rename leaves a partial file: no round, removed on writing.
  partial = pseudo_labels.round_path(workdir, 1) + '.partial-0123'
  with open(partial, 'wb') as f:
    f.write(b'half a zip')
  assert pseudo_labels.load(workdir, 1) is None
  pseudo_labels.save(workdir, 1, step=10, settings={}, **_round())
  assert not os.path.exists(partial)
  assert pseudo_labels.load(workdir, 1).step == 10


def test_bad_arrays_are_refused():
  data = _round()
  data['keys'][1] = data['keys'][0]
  with pytest.raises(ValueError, match='appears twice'):
    pseudo_labels.check(**data)
  data = _round()
  data['labels']['video'][0] = 7
  with pytest.raises(ValueError, match=r'labels_video must lie in \[-1, 7\)'):
    pseudo_labels.check(**data)
  with pytest.raises(ValueError, match='same clusterings'):
    pseudo_labels.check(data['keys'], {'audio': data['labels']['audio']}, data['centroids'])


def test_pack_is_mixed_radix_and_unpacks_in_numpy_and_jax():
  data = _round(n=200, k=7)
  audio, video = data['labels']['audio'], data['labels']['video']
  sizes = {'audio': 7, 'video': 5}
  video = video % 5
  packed = pseudo_labels.pack({'audio': audio, 'video': video}, sizes)
  assert packed.dtype == np.int32
  np.testing.assert_array_equal(packed, np.where(audio < 0, -1, audio * 5 + video))
  for unpack_input in (packed, jnp.asarray(packed)):
    out = pseudo_labels.unpack(unpack_input, sizes)
    np.testing.assert_array_equal(out['audio'], audio)
    np.testing.assert_array_equal(out['video'], np.where(audio < 0, -1, video))
  with pytest.raises(ValueError, match='do not pack into one int32'):
    pseudo_labels.pack({'a': audio, 'v': video}, {'a': 2**16, 'v': 2**15})
