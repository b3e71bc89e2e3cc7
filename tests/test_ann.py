"""Approximate search (mmv.ann, mmv.index_ann): recall against exact search, and its use by
moments.search only while it covers the index."""

import os

import faiss
import numpy as np
from sklearn import neighbors

from mmv import ann
from mmv import index_ann
from mmv import index_files
from mmv import moments


def _clustered(n, dim=64, clusters=50, seed=0):
  """Unit vectors around random centres, each cluster spread in a few directions of its own
  (embeddings have clusters and few dimensions within them; uniform ones have neither), and a
  little noise in all."""
  centres = np.random.default_rng(0).standard_normal([clusters, dim]) / np.sqrt(dim)
  spread = np.random.default_rng(1).standard_normal([clusters, 4, dim]) / np.sqrt(dim)
  rng = np.random.default_rng(seed + 2)
  k = rng.integers(0, clusters, n)
  x = (centres[k] + 0.5 * np.einsum('nd,nde->ne', rng.standard_normal([n, 4]), spread[k]) +
       0.05 * rng.standard_normal([n, dim]) / np.sqrt(dim))
  return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_exact_search_is_scikit_learn_nearest_neighbours():
  gallery, queries = _clustered(3000), _clustered(20, seed=1)
  ids, scores = ann.exact_search(gallery, queries, 10)
  nn = neighbors.NearestNeighbors(n_neighbors=10, algorithm='brute', metric='cosine')
  distances, expected = nn.fit(gallery).kneighbors(queries)
  np.testing.assert_array_equal(ids, expected)
  np.testing.assert_allclose(scores, 1 - distances, atol=1e-5)


def test_exact_search_ties_keep_row_order():
  gallery = np.zeros([6, 4], np.float32)
  gallery[[1, 3, 4], 0] = 1.0
  ids, _ = ann.exact_search(gallery, np.array([1, 0, 0, 0], np.float32), 2)
  np.testing.assert_array_equal(ids, [[1, 3]])


def test_exact_search_a_block_at_a_time_of_a_float16_memmap(tmp_path):
  """Blocks of rows give the one-block answer, ties included (repeated rows), and a float16
  memmap is searched as its float32 values."""
  gallery = _clustered(3000)
  gallery[2000:2100] = gallery[:100]  # Ties across blocks: the lower rows come first.
  queries = np.concatenate([_clustered(10, seed=3), gallery[:5]])
  whole = ann.exact_search(gallery, queries, 10, block=len(gallery))
  for block in (7, 1000, 2048):
    np.testing.assert_array_equal(ann.exact_search(gallery, queries, 10, block=block)[0],
                                  whole[0])
  # A query that is row r < 100 ties with row 2000 + r: r first, then its copy.
  np.testing.assert_array_equal(whole[0][10:, :2], [[r, 2000 + r] for r in range(5)])
  path = str(tmp_path / 'g.npy')
  np.save(path, gallery.astype(np.float16))
  memmap = np.load(path, mmap_mode='r')
  ids, scores = ann.exact_search(memmap, queries, 10, block=500)
  expected = ann.exact_search(gallery.astype(np.float16).astype(np.float32), queries, 10)
  np.testing.assert_array_equal(ids, expected[0])
  np.testing.assert_allclose(scores, expected[1], rtol=1e-6)


def test_ann_recall_at_10_against_exact(tmp_path):
  gallery, queries = _clustered(20_000), _clustered(50, seed=2)
  index = ann.build_from_array(gallery, str(tmp_path / 'ann'))
  found, scores = index.search(queries, 10)
  exact, exact_scores = ann.exact_search(gallery, queries, 10)
  recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)])
  assert recall >= 0.9, recall
  assert ann.sample_recall(index, gallery) >= 0.9
  # One cell probed, no more candidates than results: the approximation shows.
  assert ann.sample_recall(ann.load(str(tmp_path / 'ann'), nprobe=1, rerank=10), gallery) < 0.9
  # Re-ranked scores are the float16 vectors' inner products: the exact ones to ~1e-3.
  hit = found == exact
  np.testing.assert_allclose(scores[hit], exact_scores[hit], atol=2e-3)
  # Probing every cell and re-ranking many finds the exact neighbours.
  full = ann.load(str(tmp_path / 'ann'), nprobe=index.index.nlist, rerank=2000)
  found, _ = full.search(queries, 10)
  assert np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)]) >= 0.99


def test_every_vector_is_in_its_nearest_cell(tmp_path):
  """The cells are the centroids' exact Voronoi cells, at every size the defaults choose: an
  HNSW search of 4096 centroids (the default at 10M once) gave clustered 512-d vectors their
  nearest cell a quarter of the time and put 36% of them in one cell, scanned by every query."""
  gallery = _clustered(5000)
  index = ann.build_from_array(gallery, str(tmp_path / 'ann'))
  ivf = faiss.extract_index_ivf(index.index)
  centroids = ivf.quantizer.reconstruct_n(0, ivf.nlist)
  nearest = np.argmin(((gallery[:, None, :] - centroids[None]) ** 2).sum(-1), 1)
  sizes = np.array([ivf.invlists.list_size(c) for c in range(ivf.nlist)])
  # The same cell sizes as numpy's nearest centroids (a float32 near-tie may move one vector).
  assert sizes.sum() == len(gallery)
  assert np.abs(sizes - np.bincount(nearest, minlength=ivf.nlist)).sum() <= 4
  for rows in (10 ** 5, 10 ** 6, 10 ** 7, 10 ** 8):
    factory = ann.default_params(rows, 512)[0]
    made = faiss.index_factory(512, factory)  # Owns the quantizer: kept while it is read.
    quantizer = faiss.downcast_index(faiss.extract_index_ivf(made).quantizer)
    assert type(quantizer) in (faiss.IndexFlat, faiss.IndexFlatL2), (rows, factory)


def _index(tmp_path, files=40, windows=50, dim=64):
  """A moments.Index of clustered window vectors (no model: queries are given as vectors)."""
  rows = files * windows
  vectors = {s: _clustered(rows, dim, seed=k) for k, s in enumerate(('vat', 'va', 'sound'))}
  window_file = np.repeat(np.arange(files), windows)
  starts = np.tile(np.arange(windows, dtype=np.float64), files)
  entries = [{'file': f'/videos/{i}.mp4', 'name': f'{i}.mp4', 'duration': float(windows),
              'start': None, 'end': None} for i in range(files)]
  file_vectors = {s: np.stack([v[window_file == i].mean(0) for i in range(files)])
                  for s, v in vectors.items()}
  return moments.Index(index_dir=str(tmp_path), model=None, settings={'hop': 1.0},
                       files=entries, file_vectors=file_vectors, window_vectors=vectors,
                       window_file=window_file, window_times=np.stack([starts, starts + 3.2], 1),
                       unreadable=[])


def test_search_uses_the_ann_index_while_it_covers_the_index(tmp_path):
  index = _index(tmp_path)
  built = index_ann.build(str(tmp_path), stored=index, spaces=('vat',), log=lambda m: None)
  assert built['vat']['windows'] == len(index.window_vectors['vat'])
  assert built['vat']['recall@10'] >= 0.9
  anns, notes = index_ann.load(index)
  assert set(anns) == {'vat'} and not notes
  query = ('vat', index.window_vectors['vat'][123])
  exact = moments.search(index, query=query, top_k=5)
  approximate = moments.search(index, query=query, top_k=5,
                               scorer=index_ann.scorer(index, anns))
  assert approximate[0] == exact[0]
  assert approximate[0]['file'] == '/videos/2.mp4' and approximate[0]['peak'] == 23.0
  overlap = {(r['file'], r['peak']) for r in approximate} & {(r['file'], r['peak'])
                                                            for r in exact}
  assert len(overlap) >= 4
  # A part added after the build: the ANN index no longer covers the index, search is exact.
  os.makedirs(tmp_path / 'parts' / '00000')
  anns, notes = index_ann.load(index)
  assert not anns and 'rebuilt' in notes[0]


def test_small_indexes_get_no_ann_index(tmp_path):
  index = _index(tmp_path, files=4, windows=10)
  built = index_ann.build(str(tmp_path), stored=index, log=lambda m: None)
  assert all(isinstance(v, str) and 'exact' in v for v in built.values())
  assert index_ann.load(index) == ({}, [])


def test_an_index_on_disk_reads_the_windows_of_its_ann_spaces_from_their_float16_copy(
    tmp_path):
  """mmv.embed's files: the ANN index is built a part at a time, and an opened index takes the
  windows of a space that has one from its float16 memmap (memory holds none of them; only the
  candidates' rows are read), finding what the index read whole finds."""
  memory = _index(tmp_path / 'memory')
  directory = str(tmp_path / 'disk')
  settings = {'model': {'model': {'vat_dim': 64, 'va_dim': 64}}, 'hop': 1.0}
  with index_files.Writer(directory, settings) as writer:
    for i, entry in enumerate(memory.files):
      rows = memory.window_file == i
      writer.add_embedded(entry, {s: v[i] for s, v in memory.file_vectors.items()},
                          memory.window_times[rows],
                          {s: v[rows] for s, v in memory.window_vectors.items()})
      if i % 15 == 14:
        writer.write_part(writer.pending())
    writer.write_part(writer.pending())
  assert len(index_files.part_names(directory)) == 3
  built = index_ann.build(directory, spaces=('vat',), log=lambda m: None)
  assert built['vat']['windows'] == len(memory.window_file) and built['vat']['recall@10'] >= 0.9
  whole = moments.Index(**vars(index_files.read_index(directory)), index_dir=directory,
                        model=None)
  opened = moments.open_index(directory, model='not used')
  assert isinstance(opened.window_vectors['vat'], np.memmap)
  assert not isinstance(opened.window_vectors['va'], np.memmap)  # No ANN index there.
  np.testing.assert_array_equal(opened.window_vectors['vat'],
                                whole.window_vectors['vat'].astype(np.float16))
  np.testing.assert_array_equal(opened.window_file, whole.window_file)
  assert index_files.read_entries(directory)[1:] == (whole.files, whole.unreadable)
  anns, notes = index_ann.load(opened)
  assert set(anns) == {'vat'} and not notes
  query = ('vat', whole.window_vectors['vat'][123])
  expected = moments.search(whole, query=query, top_k=5)
  for found in (moments.search(opened, query=query, top_k=5,
                               scorer=index_ann.scorer(opened, anns)),
                moments.search(opened, query=query, top_k=5)):  # Exact, on the float16 copy.
    assert (found[0]['file'], found[0]['peak']) == (expected[0]['file'], expected[0]['peak'])
    assert abs(found[0]['score'] - expected[0]['score']) < 2e-3
    assert len({(r['file'], r['peak']) for r in found} &
               {(r['file'], r['peak']) for r in expected}) >= 4
