r"""Memory of opening and searching an index of `mmv.embed` with and without its ANN indexes.

    python bench/index_memory.py --windows 300000 --dir /tmp/index_memory

Writes an index as `mmv.embed` does (index_files.Writer: parts of files of 100 windows; MMV's
dims: S_vat 256, S_va 512 for the picture and the sound), clustered unit vectors as in
bench/ann_scale.py, builds its ANN indexes (`index_ann.build`, a part at a time), then in a fresh
process each (peak RSS: its VmHWM): opens it whole (every window vector in memory, as without ANN indexes) or as
`mmv.search` does (the spaces with an ANN index read from their float16 copies), runs 20 queries
per space, and reports the process's peak RSS and the median query time.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
DIMS = {'vat': 256, 'va': 512, 'sound': 512}
WINDOWS_PER_FILE = 100


def write(directory, windows, seed=0):
  from ann_scale import Clustered  # pylint: disable=g-import-not-at-top
  from mmv import index_files  # pylint: disable=g-import-not-at-top
  data = {s: Clustered(windows, seed + k) for k, s in enumerate(DIMS)}
  settings = {'model': {'model': {'vat_dim': DIMS['vat'], 'va_dim': DIMS['va']}}, 'hop': 1.0}
  files = windows // WINDOWS_PER_FILE
  times = np.stack([np.arange(WINDOWS_PER_FILE, dtype=np.float64)] * 2, 1) + [0, 3.2]
  with index_files.Writer(directory, settings) as writer:
    for start in range(0, files, 2500):  # Parts of 2,500 files (250k windows).
      chunk = {s: d.draw(min(2500, files - start) * WINDOWS_PER_FILE,
                         np.random.default_rng([seed, 3, start]))[:, :DIMS[s]]
               for s, d in data.items()}
      chunk = {s: v / np.linalg.norm(v, axis=1, keepdims=True) for s, v in chunk.items()}
      for i in range(len(chunk['vat']) // WINDOWS_PER_FILE):
        rows = slice(i * WINDOWS_PER_FILE, (i + 1) * WINDOWS_PER_FILE)
        entry = {'file': f'/videos/{start + i}.mp4', 'name': f'{start + i}.mp4', 'start': None,
                 'end': None, 'duration': 103.2, 'windows': WINDOWS_PER_FILE}
        writer.add_embedded(entry, {s: v[rows].mean(0) for s, v in chunk.items()}, times,
                            {s: v[rows] for s, v in chunk.items()})
      writer.write_part(writer.pending())


def measure(directory, whole):
  """In this process: peak RSS (GB) and median ms per query of the index opened one way."""
  from mmv import index_ann  # pylint: disable=g-import-not-at-top
  from mmv import index_files  # pylint: disable=g-import-not-at-top
  from mmv import moments  # pylint: disable=g-import-not-at-top
  t = time.perf_counter()
  if whole:
    index = moments.Index(**vars(index_files.read_index(directory)), index_dir=directory,
                          model=None)
  else:
    index = moments.open_index(directory, model='not used')
  open_s = time.perf_counter() - t
  anns, _ = index_ann.load(index)
  scorer = index_ann.scorer(index, anns)
  times = []
  for space in DIMS:
    for row in np.random.default_rng(1).choice(len(index.window_file), 20, replace=False):
      query = (space, np.asarray(index.window_vectors[space][row], np.float32))
      t = time.perf_counter()
      moments.search(index, query=query, top_k=10, scorer=scorer)
      times.append(time.perf_counter() - t)
  return {'opened': 'whole' if whole else 'with its ANN indexes', 'open_s': round(open_s, 1),
          'ann_spaces': sorted(anns), 'median_query_ms': round(1e3 * float(np.median(times)), 1),
          'peak_rss_gb': round(_status_kb('VmHWM') / 2 ** 20, 2),
          # Now, after the queries: memory of its own (anonymous) and file pages mapped (the
          # float16 memmaps' pages read, which the kernel may drop and read again).
          'rss_anon_gb': round(_status_kb('RssAnon') / 2 ** 20, 2),
          'rss_file_gb': round(_status_kb('RssFile') / 2 ** 20, 2)}


def _status_kb(field):
  """A field of /proc/self/status in kB. VmHWM is this process's peak resident set: not
  getrusage's ru_maxrss, which a process started by fork and exec inherits from its parent
  (here the one that built the index)."""
  with open('/proc/self/status') as f:
    return int(f.read().split(field + ':')[1].split()[0])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--windows', type=int, default=300_000)
  parser.add_argument('--dir', default=None, help='Where the index goes (removed after).')
  parser.add_argument('--measure', choices=('whole', 'ann'), help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.measure:
    print(json.dumps(measure(args.dir, args.measure == 'whole')))
    return
  directory = args.dir or tempfile.mkdtemp(prefix='index_memory_')
  try:
    t = time.perf_counter()
    write(directory, args.windows)
    print(f'wrote {args.windows} windows in {time.perf_counter() - t:.0f} s', flush=True)
    from mmv import index_ann  # pylint: disable=g-import-not-at-top
    t = time.perf_counter()
    built = index_ann.build(directory, log=lambda m: None)
    print(f'built the ANN indexes in {time.perf_counter() - t:.0f} s: {json.dumps(built)}',
          flush=True)
    for how in ('whole', 'ann'):
      out = subprocess.run([sys.executable, __file__, '--dir', directory, '--measure', how],
                           check=True, capture_output=True, text=True).stdout
      print(out.strip().splitlines()[-1], flush=True)
  finally:
    shutil.rmtree(directory, ignore_errors=True)


if __name__ == '__main__':
  main()
