"""mmv.kmeans against scikit-learn's KMeans (same data, same initial centroids), and split over
8 devices against one."""

import jax
import numpy as np
import pytest
from sklearn import cluster
from sklearn import datasets
from sklearn import metrics

from mmv import kmeans
from mmv import sharding


def _blobs(n=203, d=5, centers=6, std=2.0, seed=0):
  x, y = datasets.make_blobs(n_samples=n, n_features=d, centers=centers, cluster_std=std,
                             random_state=seed)
  return x.astype(np.float32), y


def _sklearn(x, init, iterations, tol):
  return cluster.KMeans(n_clusters=len(init), init=init, n_init=1, max_iter=iterations,
                        tol=tol, algorithm='lloyd').fit(x)


def _check_same(ours, ref, x):
  np.testing.assert_array_equal(ours.labels, ref.labels_)
  np.testing.assert_allclose(ours.centroids, ref.cluster_centers_, rtol=1e-4, atol=1e-4)
  assert ours.iterations == ref.n_iter_
  np.testing.assert_allclose(ours.inertia, ref.inertia_, rtol=1e-4)
  # And against the definition: every point's nearest centroid, the squared distances' sum.
  d2 = ((x[:, None] - ours.centroids[None]) ** 2).sum(-1)
  np.testing.assert_array_equal(ours.labels, d2.argmin(1))
  np.testing.assert_allclose(ours.inertia, d2.min(1).sum(), rtol=1e-4)


# 403 rows: padded to 408 over the 8 devices. A loose std makes the clusters overlap, so the
# runs take 13 iterations to converge (10 with tol=1e-2): the stopping rules matter.
@pytest.mark.parametrize('iterations,tol,expected', [(3, 0.0, 3), (100, 0.0, 13),
                                                     (100, 1e-2, 10)])
def test_same_as_sklearn_from_the_same_init(iterations, tol, expected):
  x, _ = _blobs(n=403, centers=8, std=6.0)
  init = x[np.random.default_rng(1).choice(len(x), 8, replace=False)]
  ref = _sklearn(x, init, iterations, tol)
  ours = kmeans.fit(x, 8, init=init, iterations=iterations, tol=tol)
  _check_same(ours, ref, x)
  assert ours.iterations == expected


def test_an_empty_cluster_takes_the_farthest_point_as_sklearn_does():
  x, _ = _blobs()
  init = x[:4].copy()
  init[2] = 1e3  # No point is nearest to it: empty at the first assignment.
  ref = _sklearn(x, init, 100, 0.0)
  ours = kmeans.fit(x, 4, init=init, iterations=100, tol=0.0)
  _check_same(ours, ref, x)
  assert np.bincount(ours.labels, minlength=4).min() > 0


@pytest.mark.slow
@pytest.mark.parametrize('init', ['k-means++', 'random'])
def test_split_over_8_devices_equals_one_device(init):
  x, _ = _blobs(n=301, d=7, centers=9, std=3.0)
  one = kmeans.fit(x, 9, init=init, seed=3,
                   mesh=sharding.make_mesh(devices=jax.devices()[:1]))
  eight = kmeans.fit(x, 9, init=init, seed=3, mesh=sharding.make_mesh())
  assert sharding.make_mesh().devices.size == 8
  np.testing.assert_array_equal(one.labels, eight.labels)
  np.testing.assert_allclose(one.centroids, eight.centroids, rtol=1e-5, atol=1e-5)
  assert one.iterations == eight.iterations


def test_initialisations_are_data_points_drawn_from_the_seed():
  x, y = _blobs(n=200, centers=5, std=0.05)  # Five tight, far apart blobs.
  for init in kmeans.INITS:
    first = kmeans.fit(x, 5, init=init, seed=0, iterations=1, tol=0.0)
    again = kmeans.fit(x, 5, init=init, seed=0, iterations=1, tol=0.0)
    np.testing.assert_array_equal(first.centroids, again.centroids)
  other = kmeans.fit(x, 5, init='random', seed=1, iterations=1)
  assert not np.array_equal(first.centroids, other.centroids)
  # k-means++ puts one centre in each blob (far points are all but certain to be drawn): the
  # clusters are the blobs after a single step.
  for seed in range(3):
    result = kmeans.fit(x, 5, init='k-means++', seed=seed, iterations=1)
    assert metrics.adjusted_rand_score(y, result.labels) == 1.0


def test_bad_arguments_are_clear_errors():
  x = np.zeros((10, 3), np.float32)
  with pytest.raises(ValueError, match='1 ≤ k ≤ N = 10'):
    kmeans.fit(x, 11)
  with pytest.raises(ValueError, match="init='kmeans'"):
    kmeans.fit(x, 2, init='kmeans')
  with pytest.raises(ValueError, match=r'not \[k, D\]'):
    kmeans.fit(x, 2, init=np.zeros((3, 3)))
  with pytest.raises(ValueError, match='features \\[N, D\\]'):
    kmeans.fit(x[0], 2)
