"""Approximate indexes (`mmv.ann`) of an index's windows: built by `mmv.embed --ann`, used by
`mmv.search` and `mmv.serve` through `moments.search`'s scorer.

INDEX/ann/SPACE/ (SPACE: vat, va, sound) holds `mmv.ann`'s files and covers.json, the parts and
window rows it was built from. An ANN index that does not cover the index as it is now (a part
was added since) is not used: search is exact, with a note to rebuild (`mmv.embed --ann`).
Below MIN_ROWS windows no ANN index is built: exact search is as fast there.
"""

import json
import os

import numpy as np

from mmv import ann
from mmv import index_files

ANN_DIR = 'ann'
COVERS = 'covers.json'
MIN_ROWS = 1000


def _space_dir(index_dir, space):
  return os.path.join(index_dir, ANN_DIR, space)


def build(index_dir, *, stored=None, spaces=index_files.SPACES, log=print):
  """Builds the ANN index of each space's window vectors of the index in `index_dir`, read a
  part at a time (from `stored`, an index already in memory, if given), its search settings
  (`nprobe`, `rerank`) raised until its recall@10 against exact search, 50 of its windows as
  queries, is 0.95 (`ann.tune`, exact search over the index's float16 copy); returns {space:
  {'windows', 'recall@10', 'nprobe', 'rerank'}, or the reason it was not built}."""
  parts = index_files.part_names(index_dir)
  out = {}
  for space in spaces:
    if stored is not None:
      chunks = lambda s=space: [stored.window_vectors[s]]
    else:
      chunks = lambda s=space: index_files.window_chunks(index_dir, s)
    rows, dim, present = 0, None, False
    for chunk in chunks():
      rows, dim, present = rows + len(chunk), chunk.shape[1], present or bool(np.any(chunk))
    if rows < MIN_ROWS:
      out[space] = f'{rows} windows: exact search (an ANN index from {MIN_ROWS} on)'
      continue
    if not present:
      out[space] = 'no window has this modality'
      continue
    directory = _space_dir(index_dir, space)
    covers = os.path.join(directory, COVERS)
    if os.path.exists(covers):
      os.remove(covers)  # Not valid until rebuilt.
    built = ann.build(chunks, directory, rows, dim,
                      log=lambda message, s=space: log(f'ann {s}: {message}'))
    with open(covers + '.tmp', 'w') as f:
      json.dump({'parts': parts, 'rows': rows}, f)
    os.replace(covers + '.tmp', covers)
    # Search settings raised until 50 of its own windows find 95% of their exact top-10.
    recall = ann.tune(built, built.vectors, directory)
    out[space] = {'windows': rows, 'recall@10': round(recall, 3),
                  'nprobe': built.nprobe, 'rerank': built.rerank}
  return out


def covering_vectors(index_dir):
  """{space: float16 memmap [W, D]} of the ANN indexes built over the index's parts as they
  are now: what searching reads for those spaces' windows instead of the parts (only the
  candidates' rows are read, so memory holds no window vector)."""
  parts = index_files.part_names(index_dir)
  found = {}
  for space in index_files.SPACES:
    directory = _space_dir(index_dir, space)
    try:
      with open(os.path.join(directory, COVERS)) as f:
        covered = json.load(f)
      if covered['parts'] == parts:
        vectors = ann.load_vectors(directory)
        if len(vectors) == covered['rows']:
          found[space] = vectors
    except (OSError, ValueError, KeyError):
      continue  # No usable ANN index: the parts are read (index_ann.load says why).
  return found


def load(index):
  """({space: AnnIndex} of the ANN indexes that cover `index` (a `moments.Index`) as it is,
  [notes on those that do not])."""
  parts = index_files.part_names(index.index_dir)
  found, notes = {}, []
  for space, matrix in index.window_vectors.items():
    directory = _space_dir(index.index_dir, space)
    covers = os.path.join(directory, COVERS)
    if not os.path.exists(covers):
      if os.path.isdir(directory) or len(matrix) > ann.EXACT_LIMIT:
        notes.append(f'{space}: no ANN index for its {len(matrix)} windows: exact search '
                     '(build one with python -m mmv.embed --ann)')
      continue
    with open(covers) as f:
      covered = json.load(f)
    if covered['parts'] != parts or covered['rows'] != len(matrix):
      notes.append(f'{space}: the ANN index covers {covered["rows"]} of {len(matrix)} windows '
                   '(parts were added since): exact search until it is rebuilt '
                   '(python -m mmv.embed --ann)')
      continue
    try:
      found[space] = ann.load(directory)
    except (OSError, ValueError) as e:
      notes.append(f'{space}: unusable ANN index ({e}): exact search')
  return found, notes


def scorer(index, anns):
  """A `moments.search` scorer: the ANN index of the window matrix it is handed when `anns`
  has one for it, exact search otherwise (file matrices, spaces without one)."""
  by_matrix = {id(index.window_vectors[space]): a for space, a in anns.items()}

  def score(matrix, query, k):
    found = by_matrix.get(id(matrix))
    if found is None:
      ids, scores = ann.exact_search(matrix, query, k)
    else:
      ids, scores = found.search(query, k)
      keep = ids[0] >= 0
      return ids[0][keep], scores[0][keep]
    return ids[0], scores[0]

  return score
