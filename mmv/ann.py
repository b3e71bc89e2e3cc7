"""Approximate nearest-neighbour search (faiss) for indexes past exact search's size.

Exact search (`exact_search`: one matrix product over the rows held in memory) is the default;
its time grows with the rows (memory-bound: 512-d float32 is 2 KB a row read per query), past
EXACT_LIMIT rows it is slower than ~50 ms per query on 2 CPU cores (bench/ann_scale.py measures
it), and an approximate index built by `mmv.embed --ann` answers instead:

  faiss IVF (an inverted file of `nlist` k-means cells, a vector's cell found exactly among the
  centroids) over 4-bit PQ codes scanned with SIMD ("fast scan", 64 bytes per 512-d vector),
  probing `nprobe` cells; its `rerank` best candidates are then re-scored exactly (inner product) against a float16 copy of the vectors
  kept on disk (a memmap: only the candidates' rows are read), so memory holds the codes, not
  the vectors. `tune` raises nprobe and rerank until the index's own rows find 95% of their
  exact top-10 (`sample_recall`): recall depends on the data, and this measures it.

Vectors are unit rows (cosine similarity = inner product); faiss ranks the codes by L2, which
ranks unit vectors as the inner product does. On disk, an ANN index is a directory:
  index.faiss     the faiss index (codes, cells)
  vectors.f16.npy the vectors as float16 [N, D] (np.lib.format, opened as a memmap)
  ann.json        rows, dim, the factory string, nprobe, rerank
"""

import json
import math
import os
import time

# OpenMP threads that spin while waiting (libgomp's default) make faiss 20-40x slower on a
# machine whose cores are shared with other jobs (measured: training 118 s against 3 s on 2
# busy cores); faiss's wheel loads its own libgomp, which reads this when faiss is imported.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
import faiss  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

# Rows up to which exact search is the one to use: 100k x 512 float32 = 200 MB read per query,
# 16 ms on 2 quiet cores, up to ~80 ms when other jobs load them (bench/RESULTS.md); above it
# search says to build an ANN index (`mmv.embed --ann`).
EXACT_LIMIT = 100_000
ANN_FILE = 'index.faiss'
VECTORS_FILE = 'vectors.f16.npy'
META_FILE = 'ann.json'
# Rows exact search reads at a time (256 MB of 512-d float32).
BLOCK_ROWS = 131_072


def exact_search(gallery, queries, k, block=BLOCK_ROWS):
  """(ids [Q, k], scores [Q, k]) of the k rows of `gallery` [N, D] with the largest inner
  product with each of `queries` [Q, D]; ties keep row order. The gallery is read `block` rows
  at a time (as float32), so it may be a memmap (float16 or float32) larger than memory."""
  queries = np.atleast_2d(np.asarray(queries, np.float32))
  k = min(k, len(gallery))
  ids = np.zeros([len(queries), 0], np.int64)
  scores = np.zeros([len(queries), 0], np.float32)
  for start in range(0, len(gallery), block):
    block_scores = queries @ np.asarray(gallery[start:start + block], np.float32).T
    rows = np.arange(start, start + block_scores.shape[1])
    # The best so far in row order, then this block's rows (all later): position order is
    # row order, so keeping the first of tied candidates keeps the lowest rows.
    order = np.argsort(ids, axis=1, kind='stable')
    candidates = np.concatenate([np.take_along_axis(scores, order, 1), block_scores], 1)
    candidate_ids = np.concatenate([np.take_along_axis(ids, order, 1),
                                    np.broadcast_to(rows, block_scores.shape)], 1)
    best = np.stack([_top_k(row, k) for row in candidates])
    ids = np.take_along_axis(candidate_ids, best, 1)
    scores = np.take_along_axis(candidates, best, 1)
  return ids, scores


def _top_k(row, k):
  """Positions of the k largest values of `row`, best first; ties keep position order."""
  # The k-th best score in linear time; ties at it keep the first positions (a stable sort's).
  kth = row[np.argpartition(-row, k - 1)[k - 1]] if k < len(row) else -np.inf
  chosen = np.flatnonzero(row > kth)
  chosen = np.concatenate([chosen, np.flatnonzero(row == kth)[:k - len(chosen)]])
  return chosen[np.argsort(-row[chosen], kind='stable')]


def default_params(rows, dim):
  """(faiss factory string, nprobe, rerank) for `rows` vectors of `dim` dimensions: ~sqrt(N)
  cells (a power of 2; at least 39 vectors a cell to train the k-means) found by exact search
  of the centroids, dim/4 4-bit sub-quantizers (dim/8 bytes per vector).

  Not an approximate (HNSW) search of the centroids, though adding 10M vectors then costs 10M x
  4096 dot products: on clustered 512-d vectors (bench/ann_scale.py's) an HNSW32 graph of 4096
  centroids gave 25% of vectors their nearest cell and put 36% of them in one cell, which every
  query then scanned (51-61 ms at 10M whatever nprobe; 0.4 ms at 1M with exact cells)."""
  nlist = max(1, min(65536, 2 ** round(math.log2(max(1.0, math.sqrt(rows))))))
  nlist = max(1, min(nlist, rows // 39))
  m = max(1, dim // 4)
  while dim % m:
    m -= 1
  return f'IVF{nlist},PQ{m}x4fs', min(nlist, max(16, nlist // 32)), 100


class AnnIndex:
  """A faiss index over codes and a float16 memmap of the vectors for exact re-ranking."""

  def __init__(self, index, vectors, nprobe, rerank):
    self.index, self.vectors = index, vectors
    self.nprobe, self.rerank = nprobe, rerank
    faiss.extract_index_ivf(index).nprobe = nprobe

  @property
  def rows(self):
    return self.index.ntotal

  def search(self, queries, k):
    """(ids [Q, k], scores [Q, k]) of the approximate k nearest rows by inner product; ids of
    -1 (score -inf) where fewer than k were found."""
    queries = np.ascontiguousarray(np.atleast_2d(queries), np.float32)
    _, candidates = self.index.search(queries, max(k, self.rerank))
    ids = np.full([len(queries), k], -1, np.int64)
    scores = np.full([len(queries), k], -np.inf, np.float32)
    for q, row in enumerate(candidates):
      found = np.unique(row[row >= 0])  # Sorted: reads the memmap in file order.
      if not len(found):
        continue
      exact = self.vectors[found].astype(np.float32) @ queries[q]
      best = np.argsort(-exact, kind='stable')[:k]
      ids[q, :len(best)], scores[q, :len(best)] = found[best], exact[best]
    return ids, scores


def train_size(rows, dim, factory=None):
  """How many vectors train the index: 40 a cell (faiss's k-means wants >= 39), >= 20k."""
  nlist = faiss.extract_index_ivf(faiss.index_factory(
      dim, factory or default_params(rows, dim)[0])).nlist
  return min(rows, max(20_000, 40 * nlist))


def build(chunks, directory, rows, dim, *, factory=None, nprobe=None, rerank=None,
          sample=None, seed=0, log=None):
  """Builds an ANN index of `rows` vectors in `directory` from `chunks`, a function returning
  an iterable of float32 [n, dim] unit-row arrays (in row order, summing to `rows`; called
  twice, once for a uniform training sample of `train_size` rows, once to add, unless `sample`
  gives the training vectors), so that memory holds one chunk and the codes. Returns the
  loaded AnnIndex."""
  factory_d, nprobe_d, rerank_d = default_params(rows, dim)
  factory, nprobe, rerank = factory or factory_d, nprobe or nprobe_d, rerank or rerank_d
  os.makedirs(directory, exist_ok=True)
  log = log or (lambda message: None)
  index = faiss.index_factory(dim, factory)
  faiss.extract_index_ivf(index).cp.niter = 10  # Not 25: the cells change little after 10.
  if sample is None:
    size = train_size(rows, dim, factory)
    take = np.sort(np.random.default_rng(seed).choice(rows, size=size, replace=False))
    sample, start = [], 0
    for chunk in chunks():
      sample.append(chunk[take[(take >= start) & (take < start + len(chunk))] - start])
      start += len(chunk)
    sample = np.concatenate(sample)
  t = time.perf_counter()
  index.train(np.ascontiguousarray(sample, np.float32))
  log(f'trained {factory} on {len(sample)} vectors in {time.perf_counter() - t:.1f} s')
  del sample
  vectors_tmp = os.path.join(directory, VECTORS_FILE + '.tmp')
  vectors = np.lib.format.open_memmap(vectors_tmp, mode='w+', dtype=np.float16,
                                      shape=(rows, dim))
  start = 0
  for chunk in chunks():
    chunk = np.ascontiguousarray(chunk, np.float32)
    if start + len(chunk) > rows:
      raise ValueError(f'the chunks hold more than the {rows} rows announced')
    index.add(chunk)
    vectors[start:start + len(chunk)] = chunk
    start += len(chunk)
  if start != rows:
    raise ValueError(f'the chunks held {start} rows, {rows} announced')
  vectors.flush()
  del vectors
  os.replace(vectors_tmp, os.path.join(directory, VECTORS_FILE))
  faiss.write_index(index, os.path.join(directory, ANN_FILE + '.tmp'))
  os.replace(os.path.join(directory, ANN_FILE + '.tmp'), os.path.join(directory, ANN_FILE))
  meta = {'rows': rows, 'dim': dim, 'factory': factory, 'nprobe': nprobe, 'rerank': rerank}
  with open(os.path.join(directory, META_FILE + '.tmp'), 'w') as f:
    json.dump(meta, f, indent=1)
  os.replace(os.path.join(directory, META_FILE + '.tmp'), os.path.join(directory, META_FILE))
  log(f'added {rows} vectors in {time.perf_counter() - t:.1f} s since training began')
  return load(directory)


def build_from_array(vectors, directory, **kwargs):
  """`build` of the rows of one in-memory array [N, D]."""
  vectors = np.asarray(vectors, np.float32)
  step = 100_000
  return build(lambda: (vectors[i:i + step] for i in range(0, len(vectors), step)),
               directory, len(vectors), vectors.shape[1], **kwargs)


def recall_sample(vectors, *, queries=50, k=10, seed=0):
  """(query rows [Q, D], their exact top-k ids [Q, k] and scores [Q, k]) of `queries` rows of
  `vectors` drawn at random: what `sample_recall` measures an index against (one exact pass
  over `vectors`, which may be a memmap)."""
  rows = np.sort(np.random.default_rng(seed).choice(len(vectors), min(queries, len(vectors)),
                                                    replace=False))
  q = np.asarray(vectors[rows], np.float32)
  return (q,) + exact_search(vectors, q, k)


def sample_recall(index, vectors, *, queries=50, k=10, seed=0, tie=1e-3, sample=None):
  """recall@k of `index` against exact search over `vectors` (the rows it holds: an array or
  a memmap), with `queries` of its rows drawn at random as the queries (or `sample`, from
  `recall_sample`): how well it does on this data. A result whose exact score is within `tie`
  of the k-th exact score counts as found: the float16 copy that re-ranks cannot order closer
  scores (overlapping windows of one file are that close)."""
  q, exact, exact_scores = sample or recall_sample(vectors, queries=queries, k=k, seed=seed)
  found, _ = index.search(q, exact.shape[1])
  hits = []
  for f, e, kth, query in zip(found, exact, exact_scores[:, -1], q):
    f = f[f >= 0]
    scores = np.asarray(vectors[np.sort(f)], np.float32) @ query
    hits.append((len(set(f) & set(e)) + np.sum(~np.isin(np.sort(f), e) &
                                               (scores >= kth - tie))) / len(e))
  return float(np.mean(hits))


def tune(index, vectors, directory=None, *, target=0.95, queries=50, seed=0):
  """Raises `index`'s nprobe and rerank (cheapest first) until its `sample_recall` on
  `vectors` (an array or a memmap: read once, for the exact top-10) reaches `target`, or all
  cells and 3200 candidates are searched; records the settings in `directory`'s META_FILE if
  given. Returns the recall reached."""
  sample = recall_sample(vectors, queries=queries, seed=seed)
  nlist = faiss.extract_index_ivf(index.index).nlist
  settings = sorted({(min(nlist, index.nprobe * 2 ** i), index.rerank * 2 ** j)
                     for i in range(8) for j in range(6)}, key=lambda s: s[0] * s[1])
  recall = sample_recall(index, vectors, sample=sample)
  for nprobe, rerank in settings:
    if recall >= target:
      break
    if nprobe * rerank <= index.nprobe * index.rerank:
      continue
    faiss.extract_index_ivf(index.index).nprobe = nprobe
    index.nprobe, index.rerank = nprobe, rerank
    recall = sample_recall(index, vectors, sample=sample)
  if directory is not None:
    path = os.path.join(directory, META_FILE)
    with open(path) as f:
      meta = json.load(f)
    meta.update(nprobe=index.nprobe, rerank=index.rerank, sample_recall=round(recall, 4))
    with open(path + '.tmp', 'w') as f:
      json.dump(meta, f, indent=1)
    os.replace(path + '.tmp', path)
  return recall


def load_vectors(directory):
  """The float16 copy [N, D] of an ANN index's vectors, as a read-only memmap."""
  return np.load(os.path.join(directory, VECTORS_FILE), mmap_mode='r')


def load(directory, *, nprobe=None, rerank=None):
  """The AnnIndex written by `build` in `directory` (search settings overridable)."""
  with open(os.path.join(directory, META_FILE)) as f:
    meta = json.load(f)
  index = faiss.read_index(os.path.join(directory, ANN_FILE))
  vectors = load_vectors(directory)
  if index.ntotal != meta['rows'] or vectors.shape != (meta['rows'], meta['dim']):
    raise ValueError(f'{directory}: the faiss index ({index.ntotal} rows) and vectors '
                     f'{vectors.shape} do not match {META_FILE}: rebuild it (mmv.embed --ann)')
  return AnnIndex(index, vectors, nprobe or meta['nprobe'], rerank or meta['rerank'])
