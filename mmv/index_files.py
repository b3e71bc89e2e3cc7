"""The files of an index (`python -m mmv.embed`), and the one run that writes them.

INDEX/
  index.json        the model (`index_model.identity`: checkpoint, its modification time,
                    protocol), the protocol block, `hop` and `window` seconds, the config
  lock              held by the run writing (`mmv.workdir_lock`: its pid and host; taken over
                    only when stale); readers ignore it
  pending/          one file per input embedded and not yet in a part (KEY.npz, or KEY.json
                    for an unreadable one), written under a temporary name and renamed
  parts/NNNNN/      files.npz (per file: vat, va, sound [F, D]), windows.npz (per window: vat,
                    va, sound [W, D], times [W, 2] seconds, owner [W] the row of its file) and
                    manifest.json: `entries` (file, name, labels, duration, windows, kinds,
                    skipped windows) and `unreadable` (file, name, reason)
Parts are made of pending files, written under a temporary name and renamed; the pending
files are removed after. A run that dies leaves its pending files: the next run (once the lock
is stale) puts them in its first part instead of embedding those inputs again. Temporary files
are removed only by the lock's holder and only when older than the lock's staleness (a run
that lost its lock while alive is not mid-write on them).
"""

import dataclasses
import hashlib
import json
import os
import shutil
import time
import uuid

import numpy as np

from mmv import workdir_lock

FORMAT = 2
INDEX_FILE = 'index.json'
PARTS = 'parts'
PENDING = 'pending'
MANIFEST = 'manifest.json'
SPACES = ('vat', 'va', 'sound')


class IndexRefused(ValueError):
  """An index that cannot be made or extended as asked; nothing was changed."""


def entry_key(entry):
  """What tells one indexed input from another: its file (or name) and its times as listed."""
  return json.dumps([entry['file'] or entry['name'], entry['start'], entry['end']])


def _file_id(key):
  return hashlib.sha1(key.encode()).hexdigest()[:20]


@dataclasses.dataclass
class Stored:
  """An index as read: see `moments.Index` for the fields."""
  settings: dict
  files: list
  file_vectors: dict
  window_vectors: dict
  window_file: np.ndarray
  window_times: np.ndarray
  unreadable: list


def read_settings(index_dir):
  path = os.path.join(index_dir, INDEX_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f'no index {index_dir} (no {path}); make one with python -m mmv.embed')
  with open(path) as f:
    settings = json.load(f)
  if settings.get('format') != FORMAT:
    raise IndexRefused(f'{index_dir} was made by an earlier mmv.embed (one embedding per file): '
                       'make a new index (another --output)')
  return settings


def part_names(index_dir):
  directory = os.path.join(index_dir, PARTS)
  if not os.path.isdir(directory):
    return []
  return sorted(n for n in os.listdir(directory) if n.isdigit())


def _parts(index_dir):
  """(part directory, manifest) of each part, in order."""
  for name in part_names(index_dir):
    part = os.path.join(index_dir, PARTS, name)
    with open(os.path.join(part, MANIFEST)) as f:
      yield part, json.load(f)


def _embedded_and_unreadable(files, unreadable):
  """The unreadable entries not embedded since (`--retry_failed`), each once (its latest)."""
  for e in files:
    unreadable.pop(entry_key(e), None)
  return list(unreadable.values())


def read_entries(index_dir):
  """(settings, files, unreadable) of the index: its manifests alone, no vector."""
  settings, files, unreadable = read_settings(index_dir), [], {}
  for _, manifest in _parts(index_dir):
    files += manifest['entries']
    unreadable.update((entry_key(u), u) for u in manifest['unreadable'])
  return settings, files, _embedded_and_unreadable(files, unreadable)


def read_index(index_dir, window_vectors=None):
  """The `Stored` index; an input listed unreadable and later embedded (`--retry_failed`) is
  listed as embedded only; one listed unreadable twice, once (its latest reason).
  `window_vectors`: {space: [W, D] array-like} standing for those spaces' window vectors (an
  ANN index's float16 memmap of them), which are then not read from the parts."""
  given = window_vectors or {}
  settings = read_settings(index_dir)
  dims = settings['model']['model']
  dim = {'vat': dims['vat_dim'], 'va': dims['va_dim'], 'sound': dims['va_dim']}
  files, unreadable = [], {}
  file_vectors = {s: [np.zeros([0, dim[s]], np.float32)] for s in SPACES}
  windows = {s: [np.zeros([0, dim[s]], np.float32)] for s in SPACES if s not in given}
  window_file, window_times = [np.zeros([0], np.int64)], [np.zeros([0, 2])]
  for part, manifest in _parts(index_dir):
    with np.load(os.path.join(part, 'files.npz'), allow_pickle=False) as per_file, \
        np.load(os.path.join(part, 'windows.npz'), allow_pickle=False) as per_window:
      if len(per_file['vat']) != len(manifest['entries']):
        raise ValueError(f'{part} holds {len(per_file["vat"])} file embeddings for '
                         f'{len(manifest["entries"])} files: not a part mmv.embed wrote')
      for s in SPACES:
        file_vectors[s].append(per_file[s])
      for s in windows:  # An npz member is read only when asked for.
        windows[s].append(per_window[s])
      window_file.append(per_window['owner'] + len(files))
      window_times.append(per_window['times'])
    files += manifest['entries']
    unreadable.update((entry_key(u), u) for u in manifest['unreadable'])
  window_file = np.concatenate(window_file)
  for s, matrix in given.items():
    if len(matrix) != len(window_file):
      raise ValueError(f'{index_dir}: {len(matrix)} {s} window vectors given for its '
                       f'{len(window_file)} windows')
  return Stored(settings, files, {s: np.concatenate(v) for s, v in file_vectors.items()},
                {s: given[s] if s in given else np.concatenate(windows[s]) for s in SPACES},
                window_file, np.concatenate(window_times),
                _embedded_and_unreadable(files, unreadable))


def window_chunks(index_dir, space):
  """The `space` window vectors [n, D] of each part in turn (one part in memory at a time)."""
  for part, _ in _parts(index_dir):
    with np.load(os.path.join(part, 'windows.npz'), allow_pickle=False) as per_window:
      yield per_window[space]


def settings_differ(old, new):
  """Why an index of `old` settings cannot be extended with `new`, or None."""
  if old['model'] != new['model']:
    o = old['model']
    return (f'it was made with another model, checkpoint or protocol (step {o["step"]} of '
            f'{o["workdir"]}, protocol {o["protocol"]["name"]}, checkpoint modified '
            f'{time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(o["checkpoint_mtime"]))})')
  if old['hop'] != new['hop']:
    return f'it was made with --hop={old["hop"]}'
  return None


class Writer:
  """Holds an index's lock while in use as a context manager, and writes its files."""

  def __init__(self, index_dir, settings, stale_after=workdir_lock.STALE_AFTER_SECONDS):
    self.index_dir, self.settings, self.stale_after = index_dir, settings, stale_after
    self.token = uuid.uuid4().hex[:12]
    self._lock = None

  def __enter__(self):
    if os.path.exists(self.index_dir) and not os.path.isdir(self.index_dir):
      raise IndexRefused(f'{self.index_dir} is a file, not an index directory: give another '
                         '--output')
    path = os.path.join(self.index_dir, INDEX_FILE)
    if os.path.isdir(self.index_dir) and not os.path.exists(path) and (
        set(os.listdir(self.index_dir)) - {workdir_lock.FILENAME, PENDING, PARTS}):
      raise IndexRefused(f'{self.index_dir} is a directory that holds no index ({INDEX_FILE}) '
                         'but other files: give a new or empty --output')
    os.makedirs(self.index_dir, exist_ok=True)
    self._lock = workdir_lock.WorkdirLock(self.index_dir, self.stale_after, option='--output')
    try:
      self._lock.__enter__()
    except workdir_lock.WorkdirLockedError as e:
      raise IndexRefused(f'another run is writing the index: {e}') from None
    try:
      self._start()
    except BaseException:
      self.__exit__(None, None, None)
      raise
    return self

  def __exit__(self, *exc):
    if self._lock is not None:
      self._lock.__exit__(*exc)
      self._lock = None

  def _start(self):
    path = os.path.join(self.index_dir, INDEX_FILE)
    if os.path.exists(path):
      why = settings_differ(read_settings(self.index_dir), self.settings)
      if why:
        raise IndexRefused(f'{self.index_dir}: {why}; give another --output, or extend it with '
                           'those settings')
    else:
      with open(path + '.tmp', 'w') as f:
        json.dump({'format': FORMAT, **self.settings}, f, indent=1)
      os.replace(path + '.tmp', path)
    for directory in (PARTS, PENDING):
      os.makedirs(os.path.join(self.index_dir, directory), exist_ok=True)
      self._remove_old_temporaries(os.path.join(self.index_dir, directory))

  def _remove_old_temporaries(self, directory):
    """Temporary files of runs that died writing them: older than the lock's staleness."""
    for name in os.listdir(directory):
      path = os.path.join(directory, name)
      if name.startswith('.') and '.tmp' in name and self.token not in name:
        try:
          if time.time() - os.stat(path).st_mtime > self.stale_after:
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        except FileNotFoundError:
          pass

  # Pending inputs.

  def _pending_path(self, key, ext):
    return os.path.join(self.index_dir, PENDING, f'{_file_id(key)}{ext}')

  def add_embedded(self, entry, file_vectors, times, window_vectors):
    """Records an embedded input: pending until the next part."""
    final = self._pending_path(entry_key(entry), '.npz')
    tmp = os.path.join(os.path.dirname(final), f'.{os.path.basename(final)}.{self.token}.tmp')
    with open(tmp, 'wb') as f:
      np.savez(f, entry=np.array(json.dumps(entry)), times=times,
               **{f'file_{s}': file_vectors[s] for s in SPACES},
               **{f'window_{s}': window_vectors[s] for s in SPACES})
    os.replace(tmp, final)

  def add_unreadable(self, entry):
    final = self._pending_path(entry_key(entry), '.json')
    tmp = os.path.join(os.path.dirname(final), f'.{os.path.basename(final)}.{self.token}.tmp')
    with open(tmp, 'w') as f:
      json.dump(entry, f)
    os.replace(tmp, final)

  def pending(self):
    """Paths of the pending inputs (this run's and those a dead run left)."""
    directory = os.path.join(self.index_dir, PENDING)
    return sorted(os.path.join(directory, n) for n in os.listdir(directory)
                  if not n.startswith('.') and n.endswith(('.npz', '.json')))

  @staticmethod
  def pending_entry(path):
    """(entry, embedded?) of a pending file."""
    if path.endswith('.json'):
      with open(path) as f:
        return json.load(f), False
    with np.load(path, allow_pickle=False) as z:
      return json.loads(str(z['entry'])), True

  def write_part(self, paths):
    """Makes part NNNNN (the next number) of pending files `paths`, then removes them."""
    entries, unreadable, files, windows = [], [], {s: [] for s in SPACES}, {
        s: [] for s in SPACES}
    times, owner = [], []
    for path in paths:
      if path.endswith('.json'):
        unreadable.append(self.pending_entry(path)[0])
        continue
      with np.load(path, allow_pickle=False) as z:
        for s in SPACES:
          files[s].append(z[f'file_{s}'][None])
          windows[s].append(z[f'window_{s}'])
        times.append(z['times'])
        owner.append(np.full([len(z['times'])], len(entries), np.int64))
        entries.append(json.loads(str(z['entry'])))
    dims = self.settings['model']['model']
    dim = {'vat': dims['vat_dim'], 'va': dims['va_dim'], 'sound': dims['va_dim']}
    cat = lambda parts, s: (np.concatenate(parts) if parts else
                            np.zeros([0, dim[s]], np.float32))
    parts = os.path.join(self.index_dir, PARTS)
    number = int(max(part_names(self.index_dir), default=-1)) + 1
    final = os.path.join(parts, f'{number:05d}')
    tmp = os.path.join(parts, f'.{number:05d}.{self.token}.tmp')
    os.makedirs(tmp)
    try:
      np.savez(os.path.join(tmp, 'files.npz'), **{s: cat(files[s], s) for s in SPACES})
      np.savez(os.path.join(tmp, 'windows.npz'), **{s: cat(windows[s], s) for s in SPACES},
               times=np.concatenate(times) if times else np.zeros([0, 2]),
               owner=np.concatenate(owner) if owner else np.zeros([0], np.int64))
      with open(os.path.join(tmp, MANIFEST), 'w') as f:
        json.dump({'entries': entries, 'unreadable': unreadable}, f, indent=1)
      os.rename(tmp, final)
    except BaseException:
      shutil.rmtree(tmp, ignore_errors=True)
      raise
    for path in paths:
      os.remove(path)
    return final
