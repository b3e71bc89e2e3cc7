r"""Approximate search at collection scale: build time, peak memory, query latency, recall@10.

    python bench/ann_scale.py --rows 1000000 --dir /tmp/ann_1m
    python bench/ann_scale.py --rows 10000000 --dir /tmp/ann_10m
    python bench/ann_scale.py --exact_rows 250000       # exact (numpy) search latency only

The vectors are synthetic, 512-d unit rows, generated chunk by chunk from a seed (10M x 512
float32 is 20 GB: never held at once). Uniformly random vectors in 512-d have no neighbour
structure (every pair is almost orthogonal, nearest neighbours barely nearer than the rest), which
real embeddings do not look like; these are clustered: CLUSTERS unit centres, each vector its
centre plus a Gaussian offset (norm ~SPREAD) in a random 16-d subspace of its own cluster plus a
little isotropic noise (norm ~NOISE), renormalised.
Queries are drawn the same way (other seeds). The exact top-10 of each query is computed in
float32 while the vectors are added (streamed, chunk by chunk); recall@10 is the share of it the
ANN index returns. Latency: one query at a time, faiss on 2 threads, median and 95th percentile.
Peak memory: the process's maximum resident set (generation chunks included).
"""

import argparse
import json
import math
import os
import resource
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mmv import ann  # pylint: disable=g-import-not-at-top

DIM = 512
CLUSTERS = 4096
SUBSPACE = 16
SPREAD = 0.5  # Norm of a vector's offset from its centre within the cluster's subspace.
NOISE = 0.2  # Norm of its isotropic noise.
CHUNK = 250_000


class Clustered:
  """Chunk i of the synthetic collection, always the same for a seed."""

  def __init__(self, rows, seed=0):
    self.rows, self.seed = rows, seed
    rng = np.random.default_rng([seed, 0])
    self.centres = _unit(rng.standard_normal([CLUSTERS, DIM], np.float32))
    # Each cluster varies in its own random SUBSPACE-d subspace (orthonormal rows).
    self.bases = np.linalg.qr(rng.standard_normal([CLUSTERS, DIM, SUBSPACE], np.float32))[
        0].transpose(0, 2, 1)

  def draw(self, n, rng):
    k = rng.integers(0, CLUSTERS, n)
    # Python floats (not numpy's float64 scalars) keep the arrays float32.
    z = SPREAD / math.sqrt(SUBSPACE) * rng.standard_normal([n, SUBSPACE], np.float32)
    x = self.centres[k] + NOISE / math.sqrt(DIM) * rng.standard_normal([n, DIM], np.float32)
    order = np.argsort(k, kind='stable')
    bounds = np.searchsorted(k[order], np.arange(CLUSTERS + 1))
    for c in np.flatnonzero(np.diff(bounds)):
      rows = order[bounds[c]:bounds[c + 1]]
      x[rows] += z[rows] @ self.bases[c]
    return _unit(x)

  def chunk(self, i):
    n = min(CHUNK, self.rows - i * CHUNK)
    return self.draw(n, np.random.default_rng([self.seed, 1, i]))

  def queries(self, n):
    return self.draw(n, np.random.default_rng([self.seed, 2]))


def _unit(x):
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def peak_rss_gb():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def run(rows, directory, num_queries, seed, k=10):
  data = Clustered(rows, seed)
  queries = data.queries(num_queries)
  top_scores = np.full([num_queries, k], -np.inf, np.float32)
  top_ids = np.full([num_queries, k], -1, np.int64)
  passes, generate_s = [0], [0.0]

  def chunks():
    passes[0] += 1
    exact = passes[0] == 2  # The add pass also streams the exact top-k.
    assert exact, 'one pass over the collection'
    for i in range((rows + CHUNK - 1) // CHUNK):
      t = time.perf_counter()
      x = data.chunk(i)
      generate_s[0] += time.perf_counter() - t
      if exact:
        t = time.perf_counter()
        s = queries @ x.T
        ids = np.concatenate([top_ids, np.arange(i * CHUNK, i * CHUNK + len(x))[None].repeat(
            num_queries, 0)], 1)
        s = np.concatenate([top_scores, s], 1)
        best = np.argsort(-s, axis=1, kind='stable')[:, :k]
        top_ids[:], top_scores[:] = np.take_along_axis(ids, best, 1), np.take_along_axis(s, best, 1)
        generate_s[0] += time.perf_counter() - t
      yield x

  # The rows are independent draws: the first ones are a uniform sample to train on, which
  # spares a pass over the collection (ann.build would sample all of it).
  train_size = ann.train_size(rows, DIM)
  t = time.perf_counter()
  sample = np.concatenate([data.chunk(i) for i in range((train_size + CHUNK - 1) // CHUNK)])[
      :train_size]
  sample_s = time.perf_counter() - t
  passes[0] = 1  # The next pass over the chunks is the add pass (and the exact top-k).
  t = time.perf_counter()
  index = ann.build(chunks, directory, rows, DIM, seed=seed, log=print,
                    sample=sample)
  del sample
  build_s = time.perf_counter() - t - generate_s[0]
  index_bytes = os.path.getsize(os.path.join(directory, ann.ANN_FILE))
  out = {'rows': rows, 'dim': DIM, 'factory': json.load(open(os.path.join(
      directory, ann.META_FILE)))['factory'], 'build_s': round(build_s, 1),
         'generate_and_exact_s': round(generate_s[0] + sample_s, 1),
         'index_mb': round(index_bytes / 2 ** 20), 'vectors_f16_mb': round(
             os.path.getsize(os.path.join(directory, ann.VECTORS_FILE)) / 2 ** 20),
         'peak_rss_gb': round(peak_rss_gb(), 2), 'settings': []}
  nlist = index.index.nlist if hasattr(index.index, 'nlist') else None
  for nprobe in (16, 32, 64, 128):
    for rerank in (100, 200, 400):
      if nlist and nprobe > nlist:
        continue
      index = ann.AnnIndex(index.index, index.vectors, nprobe, rerank)
      index.search(queries[:5], k)  # Warm-up.
      times, found, faiss_times = [], [], []
      for q in queries:
        t = time.perf_counter()
        ids, _ = index.search(q[None], k)
        times.append(time.perf_counter() - t)
        found.append(ids[0])
        t = time.perf_counter()  # The codes' search alone (its share of the time above).
        index.index.search(q[None], max(k, rerank))
        faiss_times.append(time.perf_counter() - t)
      recall = np.mean([len(set(f) & set(e)) / k for f, e in zip(found, top_ids)])
      row = {'nprobe': nprobe, 'rerank': rerank, 'recall@10': round(float(recall), 4),
             'median_ms': round(1e3 * float(np.median(times)), 2),
             'p95_ms': round(1e3 * float(np.percentile(times, 95)), 2),
             'faiss_median_ms': round(1e3 * float(np.median(faiss_times)), 2)}
      print(row, flush=True)
      out['settings'].append(row)
  out['peak_rss_gb'] = round(peak_rss_gb(), 2)
  return out


def exact_latency(rows, seed, num_queries=50):
  """ms per query of exact (numpy) search over `rows` 512-d float32 rows."""
  data = Clustered(rows, seed)
  gallery = np.concatenate([data.chunk(i) for i in range((rows + CHUNK - 1) // CHUNK)])
  queries = data.queries(num_queries)
  ann.exact_search(gallery, queries[:2], 10)
  times = []
  for q in queries:
    t = time.perf_counter()
    ann.exact_search(gallery, q[None], 10)
    times.append(time.perf_counter() - t)
  return {'rows': rows, 'exact_median_ms': round(1e3 * float(np.median(times)), 1),
          'exact_p95_ms': round(1e3 * float(np.percentile(times, 95)), 1)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--rows', type=int, default=1_000_000)
  parser.add_argument('--exact_rows', type=int, default=None,
                      help='Measure exact search over this many rows instead.')
  parser.add_argument('--queries', type=int, default=100)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--dir', default=None, help='Where the index goes (removed after; '
                      'default a temporary directory). Needs rows x 1 KB of disk.')
  parser.add_argument('--keep', action='store_true', help='Keep --dir.')
  parser.add_argument('--output', default=None, help='Append the figures as JSON here.')
  args = parser.parse_args()
  import faiss  # pylint: disable=g-import-not-at-top
  faiss.omp_set_num_threads(2)
  if args.exact_rows:
    out = exact_latency(args.exact_rows, args.seed)
  else:
    directory = args.dir or tempfile.mkdtemp(prefix='ann_scale_')
    try:
      out = run(args.rows, directory, args.queries, args.seed)
    finally:
      if not args.keep:
        shutil.rmtree(directory, ignore_errors=True)
  print(json.dumps(out, indent=1))
  if args.output:
    with open(args.output, 'a') as f:
      f.write(json.dumps(out) + '\n')


if __name__ == '__main__':
  main()
