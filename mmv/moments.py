"""Searching an index made by `python -m mmv.embed`: moments inside files, or whole files.

    from mmv import moments
    index = moments.open_index('runs/demo/index')             # loads the model it was made with
    hits = moments.search(index, text='a red circle moves left', top_k=10)
    hits = moments.search(index, audio_file='bark.wav')         # sound-alike moments (S_va)
    hits = moments.search(index, video_file='clip.mp4', dedupe=0.95)   # look-alikes, no copies
    files = moments.search(index, text='a red circle', files=True)     # ranked files

Each result is a dict {'rank', 'file', 'name', 'start', 'end', 'peak', 'score'}: times in
seconds from the file's start; `peak` where its best window starts; `score` the cosine
similarity of that best window (of the file's embedding with `files=True`).

What is matched where (the index keeps, per window and per file, the picture in S_vat and
S_va and the sound in S_va):
  text          the picture in S_vat (text → video, as the retrieval benchmarks)
  video_file    the picture in S_vat (look-alike moments)
  audio_file    the sound in S_va (sound-alike moments, audio → audio); with
                audio_against='video' the picture in S_va (moments that look like the sound)
A moment is a run of one file's neighbouring windows: from the best window not yet in a
moment, its neighbours join while their score is at least the best's minus `merge`; windows
overlapping a moment found cannot start another.

`dedupe=THRESHOLD`: a result whose embedding (the mean of its windows', in the space searched)
has a cosine similarity of at least THRESHOLD to a better result's is dropped, and so is one
that close to the query when the query is a file (its own copies, re-encodes), as a
recommendation list needs.
"""

import dataclasses
from typing import Callable, Optional

import numpy as np

from mmv import ann
from mmv import index_ann
from mmv import index_files
from mmv import index_model
from mmv import window_embed

AGAINST = ('sound', 'video')


@dataclasses.dataclass
class Index(index_files.Stored):
  """An opened index: what `index_files.Stored` reads, its directory, and `model`: the
  `inference.Model` it was made with (queries are embedded by it). `settings`: its index.json;
  `files`: one entry per file (its manifest entry: 'file', 'name', 'duration', ...);
  `file_vectors[space]` [F, D] and `window_vectors[space]` [W, D] the unit embeddings, space
  'vat' (picture, S_vat), 'va' (picture, S_va) or 'sound' (sound, S_va; zero rows where a file
  has none); `window_file` [W] the file row of each window; `window_times` [W, 2] its (start,
  end) seconds; `unreadable`: entries of the files that could not be read, with their
  'reason'."""
  index_dir: str
  model: object


def open_index(index_dir, *, workdir=None, model=None):
  """The `Index` in `index_dir`, with the model it was made with (its workdir, step, config and
  protocol as index.json records them; `workdir` where the run has moved since; `model` an
  `inference.Model` already loaded, used as it is)."""
  # Spaces with an ANN index read their windows' float16 copy from it as a memmap.
  stored = index_files.read_index(index_dir, index_ann.covering_vectors(index_dir))
  if model is None:
    model = index_model.load_recorded(stored.settings, workdir)
  return Index(**vars(stored), index_dir=index_dir, model=model)


def query_vector(index, *, text=None, audio_file=None, video_file=None,
                 audio_against='sound'):
  """(space searched, unit query [D]) of exactly one of a sentence, a sound file or a video
  file, embedded by the index's model as its windows are (one window's length; the mean of
  the query's windows when it is longer)."""
  if sum(x is not None for x in (text, audio_file, video_file)) != 1:
    raise ValueError('give one query: a sentence, an audio file or a video file')
  if audio_against not in AGAINST:
    raise ValueError(f'audio_against must be one of {AGAINST}, got {audio_against!r}')
  if text is not None:
    return 'vat', index.model.embed_text([text]).vat[0]
  hop = float(index.settings['hop'])
  if video_file is not None:
    return 'vat', window_embed.file_vectors(index.model, video_file, hop, 'video')['vat']
  return ('sound' if audio_against == 'sound' else 'va',
          window_embed.file_vectors(index.model, audio_file, hop, 'audio')['sound'])


def exact_scorer(matrix, query, k):
  """(rows, scores) of the `k` rows of `matrix` [N, D] most similar to `query` [D], best first;
  ties keep row order."""
  rows, scores = ann.exact_search(matrix, query, k)  # A block of rows at a time.
  return rows[0], scores[0]


def search(index, *, text=None, audio_file=None, video_file=None, files=False, top_k=10,
           dedupe=None, merge=0.05, audio_against='sound', query=None,
           scorer: Optional[Callable] = None, candidates=None):
  """Ranked results (dicts, see the module doc) of one query: a sentence (`text`), a sound
  file, a video file, or `query` = (space, unit vector [D]) already embedded. `files`: whole
  files ranked by their embedding instead of moments. `dedupe`: a cosine threshold (see the
  module doc); `merge`: how far below a moment's best window a neighbour may score and join it.
  `scorer(matrix, query, k) -> (rows, scores)` replaces the exact search (an approximate
  index); it sees `candidates` rows (default: enough for `top_k` results, 20 per result)."""
  if isinstance(index, str):
    index = open_index(index)
  if top_k < 1:
    raise ValueError(f'top_k must be at least 1, got {top_k}')
  if dedupe is not None and not -1 <= dedupe <= 1:
    raise ValueError(f'dedupe is a cosine similarity in [-1, 1], got {dedupe}')
  if query is None:
    query = query_vector(index, text=text, audio_file=audio_file, video_file=video_file,
                         audio_against=audio_against)
    from_file = text is None
  else:
    from_file = False
  space, vector = query
  vector = np.asarray(vector, np.float32)
  scorer = scorer or exact_scorer
  if files:
    matrix = index.file_vectors[space]
    k = len(matrix) if candidates is None else candidates
    rows, scores = scorer(matrix, vector, k)
    found = [_file_hit(index, int(r), float(s), np.asarray(matrix[r], np.float32))
             for r, s in zip(rows, scores)]
  else:
    matrix = index.window_vectors[space]
    k = min(len(matrix), candidates or max(200, 20 * top_k))
    rows, scores = scorer(matrix, vector, k)
    found = _moments(index, matrix, np.asarray(rows), np.asarray(scores), merge)
  if dedupe is not None:
    found = _dedupe(found, vector if from_file else None, dedupe)
  out = []
  for rank, hit in enumerate(found[:top_k]):
    hit.pop('vector')
    out.append({'rank': rank + 1, **hit})
  return out


def _file_hit(index, row, score, vector):
  entry = index.files[row]
  return {'file': entry['file'], 'name': entry['name'], 'start': 0.0,
          'end': entry['duration'], 'peak': 0.0, 'score': round(score, 4), 'vector': vector}


def _moments(index, matrix, rows, scores, merge):
  """Moments (dicts with their 'vector') of the scored windows `rows`, best first."""
  score_of = dict(zip(rows.tolist(), scores.tolist()))
  taken = set()
  out = []
  for row, score in zip(rows.tolist(), scores.tolist()):
    if row in taken:
      continue
    file = index.window_file[row]
    members = [row]
    for step in (-1, 1):  # Neighbours in time: adjacent rows of the same file.
      r = row + step
      while (0 <= r < len(matrix) and index.window_file[r] == file and r not in taken and
             score_of.get(r, -np.inf) >= score - merge):
        members.append(r)
        r += step
    members.sort()
    start, end = index.window_times[members[0], 0], index.window_times[members[-1], 1]
    # Windows overlapping the moment cannot start another one.
    for r in range(members[0] - 1, -1, -1):
      if index.window_file[r] != file or index.window_times[r, 1] <= start + 1e-6:
        break
      taken.add(r)
    for r in range(members[-1] + 1, len(matrix)):
      if index.window_file[r] != file or index.window_times[r, 0] >= end - 1e-6:
        break
      taken.add(r)
    taken.update(members)
    mean = np.asarray(matrix[members], np.float32).mean(axis=0)
    entry = index.files[file]
    out.append({'file': entry['file'], 'name': entry['name'], 'start': round(float(start), 3),
                'end': round(float(end), 3),
                'peak': round(float(index.window_times[row, 0]), 3),
                'score': round(float(score), 4),
                'vector': mean / max(np.linalg.norm(mean), 1e-12)})
  return out


def _dedupe(found, query, threshold):
  """`found` without the results at least `threshold` similar to a better one (or to `query`,
  when given)."""
  kept = []
  for hit in found:
    near = [k['vector'] for k in kept] + ([query] if query is not None else [])
    if near and float(np.max(np.stack(near) @ hit['vector'])) >= threshold:
      continue
    kept.append(hit)
  return kept
