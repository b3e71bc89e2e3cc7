"""The pseudo-labels of a clustering round, kept in the workdir: `workdir/xdc/round_NNNN.npz`.

A round's file holds, per training record, its key (`mmv.data.keys`: int64, unique) and its
cluster in each clustering of the round (`labels_<name>` int32, e.g. labels_audio,
labels_video), the clusterings' centroids (`centroids_<name>` float32 [k, D]), the round, the
step it starts at, and `settings` (JSON: what the labels were computed with). XDC's training
(`mmv.methods.xdc`) writes one per round and reads it back on resume: a run preempted inside a
round continues with exactly those labels, never clustering again. The round of a step is
step // round_steps and the file names its first step: a checkpoint's step thus fixes its round
and its labels, and a file that does not fit (other settings, a changed round length) is an
error, not silently used.

Writing: into `round_NNNN.npz.partial-<random>` beside it, renamed to its name only once
complete, and never over an existing file (a finished round, or a user's file of that name):
a reader sees a round whole or not at all. Partial files of killed writers are removed when
the round is written again.
"""

import dataclasses
import io
import json
import os
import uuid

import numpy as np
import tensorflow as tf

DIRECTORY = 'xdc'
_PARTIAL = '.partial-'


@dataclasses.dataclass(frozen=True)
class Round:
  index: int
  step: int  # The train step the round starts at (state.step before its first update).
  keys: np.ndarray  # int64 [n], unique.
  labels: dict  # name → int32 [n], in [0, k) or -1 (none).
  centroids: dict  # name → float32 [k, D].
  settings: dict


def round_path(workdir, index):
  return os.path.join(workdir, DIRECTORY, f'round_{index:04d}.npz')


def check(keys, labels, centroids):
  """Clear errors for arrays that cannot be a round's."""
  keys = np.asarray(keys)
  if keys.ndim != 1 or keys.dtype != np.int64:
    raise ValueError(f'keys must be int64 [n], got {keys.dtype} {keys.shape}')
  if len(np.unique(keys)) != len(keys):
    raise ValueError('a record key appears twice among the keys')
  if not labels or set(labels) != set(centroids):
    raise ValueError(f'labels {sorted(labels)} and centroids {sorted(centroids)} must name the '
                     'same clusterings, at least one')
  for name, value in labels.items():
    value, k = np.asarray(value), len(centroids[name])
    if value.shape != keys.shape or not np.issubdtype(value.dtype, np.integer):
      raise ValueError(f'labels_{name} must be integers [{len(keys)}], got {value.dtype} '
                       f'{value.shape}')
    if value.size and (value.min() < -1 or value.max() >= k):
      raise ValueError(f'labels_{name} must lie in [-1, {k}), got [{value.min()}, {value.max()}]')


def save(workdir, index, *, step, keys, labels, centroids, settings):
  """Writes round `index` (see the module doc); FileExistsError if its file exists."""
  check(keys, labels, centroids)
  path = round_path(workdir, index)
  if tf.io.gfile.exists(path):
    raise FileExistsError(f'{path} exists: a round is never written over (load it, or move it '
                          'away to cluster again)')
  tf.io.gfile.makedirs(os.path.dirname(path))
  for stale in tf.io.gfile.glob(path + _PARTIAL + '*'):
    tf.io.gfile.remove(stale)  # Left by a writer killed before its rename.
  arrays = {'index': np.int64(index), 'step': np.int64(step),
            'keys': np.asarray(keys, np.int64),
            'settings': np.asarray(json.dumps(settings, sort_keys=True))}
  for name in labels:
    arrays[f'labels_{name}'] = np.asarray(labels[name], np.int32)
    arrays[f'centroids_{name}'] = np.asarray(centroids[name], np.float32)
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  partial = path + _PARTIAL + uuid.uuid4().hex
  with tf.io.gfile.GFile(partial, 'wb') as f:
    f.write(buffer.getvalue())
  try:
    tf.io.gfile.rename(partial, path, overwrite=False)
  except tf.errors.AlreadyExistsError as e:  # Written meanwhile (another writer).
    tf.io.gfile.remove(partial)
    raise FileExistsError(f'{path} exists: a round is never written over') from e
  return path


def load(workdir, index, *, step=None, settings=None):
  """Round `index`, or None if it was never written completely. With `step` / `settings`: a
  ValueError if the file's differ (it was made by another configuration)."""
  path = round_path(workdir, index)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path, 'rb') as f:
    data = dict(np.load(io.BytesIO(f.read()), allow_pickle=False))
  names = sorted(k[len('labels_'):] for k in data if k.startswith('labels_'))
  labels = {n: data[f'labels_{n}'] for n in names}
  centroids = {n: data.get(f'centroids_{n}') for n in names}
  if any(c is None for c in centroids.values()):
    raise ValueError(f'{path}: a clustering has labels but no centroids')
  check(data['keys'], labels, centroids)
  result = Round(index=int(data['index']), step=int(data['step']), keys=data['keys'],
                 labels=labels, centroids=centroids, settings=json.loads(str(data['settings'])))
  if result.index != index:
    raise ValueError(f'{path} holds round {result.index}, not {index}')
  if step is not None and result.step != step:
    raise ValueError(f'{path} starts at step {result.step}, but round {index} starts at step '
                     f'{step} now (was the round length changed?): move the xdc directory away '
                     'to start over')
  if settings is not None and result.settings != json.loads(json.dumps(settings,
                                                                       sort_keys=True)):
    raise ValueError(f'{path} was made with other settings:\n  {result.settings}\nnot\n  '
                     f'{settings}\nmove the xdc directory away to start over')
  return result


def pack(labels, sizes):
  """One int32 per record for the input pipeline's single `pseudo_label`: the labels of the
  clusterings `sizes` = {name: k} (in that order) in mixed radix, −1 where any is −1."""
  names = list(sizes)
  if np.prod([float(sizes[n]) for n in names]) > np.iinfo(np.int32).max:
    raise ValueError(f'cluster counts {sizes} do not pack into one int32 (product ≥ 2^31)')
  packed = np.zeros(np.shape(labels[names[0]]), np.int64)
  missing = np.zeros(packed.shape, bool)
  for n in names:
    value = np.asarray(labels[n], np.int64)
    packed = packed * sizes[n] + np.maximum(value, 0)
    missing |= value < 0
  return np.where(missing, -1, packed).astype(np.int32)


def unpack(packed, sizes):
  """`pack`'s inverse, for numpy or jax arrays: {name: labels}, −1 where packed is −1."""
  names, out, rest = list(sizes), {}, packed
  for n in reversed(names):
    out[n] = rest % sizes[n]
    rest = rest // sizes[n]
  return {n: (out[n] * (packed >= 0) - (packed < 0)) for n in names}
