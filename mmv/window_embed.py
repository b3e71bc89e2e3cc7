"""Embedding a media file window by window, reading each window by seeking to it.

A file's length is read first (its header, `mmv.ingest.timeline`); its windows are the model's
clip length (`data.num_frames` frames at stride `data.frame_stride`, at `data.fps`), one every
`hop` seconds from 0, and one more ending at the file's end when the last one stops more than
half a hop before it. Each window is decoded alone (`mmv.ingest.media.read_clip` seeks to its
key frame), a group of windows at a time (of one file or of several short ones), and embedded
through the evaluation pipeline as one clip (`inference.Model.embed_clips`): memory holds a
group of windows, whatever the files' lengths. A window that cannot be read or embedded is
skipped and counted; a file none of whose windows can be, or whose length is unknown, is
unreadable (`media_inputs.UnreadableInput`); a pass that fails is made again file by file, so
that the error is the failing file's alone.
"""

import dataclasses
import gc
import math

import av
import numpy as np

from mmv import media_inputs
from mmv.data import example as example_ops
from mmv.ingest import media
from mmv.ingest import timeline

SPACES = ('vat', 'va', 'sound')
# Windows decoded and embedded by one pass of the evaluation pipeline: each pass costs a few
# seconds of set-up (`python bench/moments_memory.py`), and holds this many windows' JPEGs.
GROUP = 128


@dataclasses.dataclass(frozen=True)
class Probe:
  duration: float
  has_video: bool
  has_audio: bool


def window_seconds(data_config):
  """A window's length: the model's clip, in seconds."""
  return example_ops.clip_seconds(data_config)


def probe(path):
  """The `Probe` of a media file (its header only); `UnreadableInput` saying why not."""
  if path is None:
    raise media_inputs.UnreadableInput('no such file')
  try:
    container = av.open(path)
  except Exception as e:  # pylint: disable=broad-except  (PyAV's errors: any means unreadable)
    raise media_inputs.UnreadableInput(f'{type(e).__name__}: {e}') from None
  try:
    video = next((s for s in container.streams.video
                  if not s.disposition & av.stream.Disposition.attached_pic), None)
    length = timeline.of_container(container, video).length
    has_audio = bool(container.streams.audio)
  finally:
    container.close()
  if video is None and not has_audio:
    raise media_inputs.UnreadableInput('no audio or video stream')
  if not length or not math.isfinite(length) or length <= 0:
    raise media_inputs.UnreadableInput('its length is unknown (no duration in its header)')
  return Probe(float(length), video is not None, has_audio)


def window_starts(duration, window, hop, start=0.0):
  """Start times (seconds) of the windows from `start` to `duration` seconds of a file."""
  if not hop > 0:
    raise ValueError(f'hop must be a positive number of seconds, got {hop}')
  if duration - start <= window:
    return [float(start)]
  count = int(math.floor((duration - start - window) / hop + 1e-6)) + 1
  starts = [round(start + k * hop, 6) for k in range(count)]
  if duration - (starts[-1] + window) > hop / 2:
    starts.append(round(duration - window, 6))
  return starts


def _read(model, path, start, window, audio):
  spec = media.ClipSpec(name=path, path=path, start=start, end=start + window)
  clip = model.inputs._read_clip(spec, audio=audio)  # pylint: disable=protected-access
  return None if isinstance(clip, str) else clip


@dataclasses.dataclass
class _File:
  """A file being embedded: its windows' results as they come."""
  path: str
  found: Probe
  end: float
  remaining: int
  tried: int
  times: list = dataclasses.field(default_factory=list)
  rows: dict = dataclasses.field(default_factory=lambda: {s: [] for s in SPACES})
  error: Exception = None


def _embed_tasks(model, tasks, window):
  """Embeds windows `tasks` [(file, start)] (of one or several files) in one pass of the
  pipeline per modality; appends each one that could be embedded to its file."""
  dims = model.config.model
  clips = [_read(model, f.path, start, window, f.found.has_audio) for f, start in tasks]
  kept = [k for k, c in enumerate(clips) if c is not None]
  rows = {s: np.zeros([len(kept), d], np.float32) for s, d in
          (('vat', dims.vat_dim), ('va', dims.va_dim), ('sound', dims.va_dim))}
  ok = np.array([tasks[k][0].found.has_video for k in kept], bool)
  pictures = [k for j, k in enumerate(kept) if ok[j]]
  if pictures:
    got, failed = model.embed_clips([clips[k] for k in pictures], 'video', num_clips=1)
    done = [j for j, k in enumerate(kept) if ok[j]]
    ok[[done[i] for i in failed]] = False
    read = [j for i, j in enumerate(done) if i not in set(failed)]
    if got is not None:
      rows['va'][read] = got.va
      if got.vat is not None:  # Methods without a text tower have no S_vat.
        rows['vat'][read] = got.vat
  sounds = [j for j, k in enumerate(kept) if clips[k].waveform is not None and
            clips[k].waveform.size and (ok[j] or not tasks[k][0].found.has_video)]
  if sounds:
    got, failed = model.embed_clips([clips[kept[j]] for j in sounds], 'audio', num_clips=1)
    read = [j for i, j in enumerate(sounds) if i not in set(failed)]
    if got is not None:
      rows['sound'][read] = got.va
      for j in read:  # A file without frames: its sound stands for it in every space.
        if not tasks[kept[j]][0].found.has_video:
          ok[j] = True
          rows['va'][j] = got.va[read.index(j)]
          if got.vat is not None:
            rows['vat'][j] = got.vat[read.index(j)]
  for j, k in enumerate(kept):
    if ok[j]:
      file, start = tasks[k]
      file.times.append([start, min(start + window, file.end)])
      for s in SPACES:
        file.rows[s].append(rows[s][j])


def _run(model, tasks, window):
  """`_embed_tasks`, a failure of several files' pass tried again file by file so that it is
  only the failing file's."""
  try:
    _embed_tasks(model, tasks, window)
  except Exception as e:  # pylint: disable=broad-except  (any error of a file is its own)
    files = list({id(f): f for f, _ in tasks}.values())
    if len(files) == 1:
      files[0].error = e
      return
    for f in files:
      _run(model, [t for t in tasks if t[0] is f], window)


def embed_files(model, inputs, hop, *, batch=None):
  """Yields (i, result) for inputs [(path, (start, end or None))] as each is done, in their
  order: result (probe, window times [W, 2], {space: unit rows [W, D]}, skipped windows), or
  the exception that made it unreadable. Windows are decoded and embedded `batch` at a time
  (default `GROUP`), of one file or several (the model sees `eval.batch_size` clips at once).
  Spaces: 'vat' and 'va' of the picture (of the sound for a file without frames), 'sound'
  (S_va; zero rows without sound)."""
  window = window_seconds(model.data)
  batch = batch or GROUP
  files, tasks = [], []

  def finished():
    while files and (files[0][1].remaining == 0 or files[0][1].error is not None):
      i, f = files.pop(0)
      yield i, _result(f)

  for i, (path, span) in enumerate(inputs):
    try:
      found = probe(path)
      end = found.duration if span[1] is None else min(span[1], found.duration)
      if end <= span[0]:
        raise media_inputs.UnreadableInput(f'[{span[0]}, {span[1]}] s is outside the file '
                                           f'({found.duration:.2f} s long)')
      starts = window_starts(end, window, hop, span[0])
    except Exception as e:  # pylint: disable=broad-except
      files.append((i, _File(path, None, 0.0, 0, 0, error=e)))
      yield from finished()
      continue
    file = _File(path, found, end, len(starts), len(starts))
    files.append((i, file))
    tasks += [(file, start) for start in starts]
    while len(tasks) >= batch:
      _pass(model, tasks[:batch], window)
      tasks = tasks[batch:]
      yield from finished()
  if tasks:
    _pass(model, tasks, window)
  yield from finished()


def _pass(model, tasks, window):
  _run(model, [t for t in tasks if t[0].error is None], window)
  for file, _ in tasks:
    file.remaining -= 1
  gc.collect()  # The pass's pipeline graphs: memory stays that of one group.


def _result(f):
  if f.error is not None:
    return f.error
  if not f.times:
    return media_inputs.UnreadableInput(f'none of its {f.tried} windows could be decoded')
  return (f.found, np.asarray(f.times, np.float64),
          {s: np.stack(r).astype(np.float32) for s, r in f.rows.items()},
          f.tried - len(f.times))


def embed_file(model, path, hop, *, batch=None, span=(0.0, None)):
  """(probe, window times [W, 2], {space: [W, D]}, skipped windows) of a file (of `span`
  seconds of it); `UnreadableInput` (or the error) when it could not be embedded."""
  (_, result), = embed_files(model, [(path, span)], hop, batch=batch)
  if isinstance(result, Exception):
    raise result
  return result


def mean_vectors(rows):
  """{space: unit mean [D]} of windows' unit rows (zero where every row is zero)."""
  out = {}
  for s, r in rows.items():
    mean = r.mean(axis=0)
    norm = np.linalg.norm(mean)
    out[s] = (mean / norm if norm > 1e-12 else mean).astype(np.float32)
  return out


def file_vectors(model, path, hop, modality):
  """{space: unit vector} of a query file: the mean of its windows' embeddings; `modality`
  ('video' or 'audio') it must have."""
  found = probe(path)
  if modality == 'video' and not found.has_video:
    raise ValueError(f'{path} has no video stream to query with')
  if modality == 'audio' and not found.has_audio:
    raise ValueError(f'{path} has no audio stream to query with')
  return mean_vectors(embed_file(model, path, hop)[2])
