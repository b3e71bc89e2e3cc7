"""Embedding a media file window by window, reading each window by seeking to it.

A file's length is read first (its header, `mmv.ingest.timeline`); its windows are the model's
clip length (`data.num_frames` frames at stride `data.frame_stride`, at `data.fps`), one every
`hop` seconds from 0, and one more ending at the file's end when the last one stops more than
half a hop before it. Each window is decoded alone (`mmv.ingest.media.read_clip` seeks to its
key frame), a batch of windows at a time, and embedded through the evaluation pipeline as one
clip (`inference.Model.embed_clips`): memory holds a batch of windows, whatever the file's
length. A window that cannot be read or embedded is skipped and counted; a file none of whose
windows can be, or whose length is unknown, is unreadable (`media_inputs.UnreadableInput`).
"""

import dataclasses
import math

import av
import numpy as np

from mmv import media_inputs
from mmv.data import example as example_ops
from mmv.ingest import media
from mmv.ingest import timeline

SPACES = ('vat', 'va', 'sound')


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


def embed_windows(model, path, hop, *, batch=None, found=None, span=(0.0, None)):
  """Yields (windows tried, times [b, 2], {space: unit rows [b, D]}) of the windows of file
  `path` that could be embedded, `batch` windows at a time (default `eval.batch_size`).
  Spaces: 'vat' and 'va' of the picture (of the sound for a file without frames), 'sound'
  (S_va; zero rows without sound). `found`: the file's `Probe`, if already read; `span`:
  (start, end or None) seconds of the file to cover."""
  found = found or probe(path)
  window = window_seconds(model.data)
  end = found.duration if span[1] is None else min(span[1], found.duration)
  if end <= span[0]:
    raise media_inputs.UnreadableInput(f'[{span[0]}, {span[1]}] s is outside the file '
                                       f'({found.duration:.2f} s long)')
  starts = window_starts(end, window, hop, span[0])
  batch = batch or int(model.config.eval.batch_size)
  dims = model.config.model
  for i in range(0, len(starts), batch):
    chunk = starts[i:i + batch]
    clips = [_read(model, path, s, window, found.has_audio) for s in chunk]
    kept = [k for k, c in enumerate(clips) if c is not None]
    clips = [clips[k] for k in kept]
    rows = {s: np.zeros([len(kept), d], np.float32) for s, d in
            (('vat', dims.vat_dim), ('va', dims.va_dim), ('sound', dims.va_dim))}
    ok = np.ones(len(kept), bool)
    if clips and found.has_video:
      got, failed = model.embed_clips(clips, 'video', num_clips=1, batch_size=len(clips))
      ok[failed] = False
      if got is not None:
        rows['vat'][ok] = _unit(got.vat)
        rows['va'][ok] = _unit(got.va)
    if clips and found.has_audio:
      with_sound = [k for k, c in enumerate(clips) if c.waveform is not None and
                    c.waveform.size and ok[k]]
      if with_sound:
        got, failed = model.embed_clips([clips[k] for k in with_sound], 'audio', num_clips=1,
                                        batch_size=len(with_sound))
        read = [k for j, k in enumerate(with_sound) if j not in set(failed)]
        if got is not None:
          rows['sound'][read] = _unit(got.va)
          if not found.has_video:
            rows['va'][read] = _unit(got.va)
            if got.vat is not None:
              rows['vat'][read] = _unit(got.vat)
        if not found.has_video:
          ok[:] = False
          ok[read] = True
    times = np.array([[chunk[k], min(chunk[k] + window, end)] for k in kept],
                     np.float64).reshape(-1, 2)
    yield len(chunk), times[ok], {s: r[ok] for s, r in rows.items()}


def _unit(x):
  """One clip's embeddings [b, D] (the clip average of one clip: unit already)."""
  return np.asarray(x, np.float32)


def embed_file(model, path, hop, *, batch=None, span=(0.0, None)):
  """(probe, window times [W, 2], {space: [W, D]}, skipped windows) of a file (of `span`
  seconds of it); `UnreadableInput` when no window of it could be embedded."""
  found = probe(path)
  times, rows, tried = [], {s: [] for s in SPACES}, 0
  for count, t, r in embed_windows(model, path, hop, batch=batch, found=found, span=span):
    tried += count
    times.append(t)
    for s in SPACES:
      rows[s].append(r[s])
  times = np.concatenate(times) if times else np.zeros([0, 2])
  if not len(times):
    raise media_inputs.UnreadableInput(f'none of its {tried} windows could be decoded')
  return found, times, {s: np.concatenate(v) for s, v in rows.items()}, tried - len(times)


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
