"""Frozen-model features of one side of a benchmark split, sharded over the devices, cached.

`extract` reads every video of a split once (an evaluation stream: in file order, padded to
whole batches whose padding rows have mask 0), runs the model on all local devices, and keeps
per video, for its C clips:
  features  float32 [V, C, D]   backbone features of the benchmark's modality (linear probe)
  video     float32 [V, C, vat] video embeddings in S_vat, not normalised (video benchmarks)
  video_va  float32 [V, C, va]  video embeddings in S_va, not normalised (video benchmarks)
  audio_va  float32 [V, C, va]  audio embeddings in S_va, not normalised (audio benchmarks)
  audio_vat float32 [V, C, vat] audio embeddings in S_vat (audio, unless the head is disjoint)
  text      float32 [V, vat]    S_vat embedding of the video's first caption (`with_text`)
  has_text  bool    [V]         the video has a caption
  label     int32   [V]
  filename  str     [V]         the record's file name (`data.with_names`)
  key       int32   [V, 2]      the record's key (`data.with_keys`, `mmv.data.keys`)
Arrays a modality or config does not give are absent. `mmv.inference` embeds a user's inputs
with the same functions, so its embeddings are those evaluation computes.
Padding rows are dropped by their mask, so no video is lost or counted twice. Records that
fail to decode are skipped and counted (or an error with `data.strict`); a shard's unreadable
tail holds an unknown number of them, so the true count of videos lost is what the split lists
less what `extract` returns.

`cached_extract` keeps the arrays under a directory with the settings they were computed with
(the checkpoint step, the data config, the shard files, and the caller's `key`: the model as
evaluated, its dtype, the checkpoint, the protocol); a later call with the same settings loads
them (memory-mapped) instead of running the model, e.g. to fit the probe with other C. Its
batches are counted in clips (`videos_per_batch`), so that what is in memory at once does not
grow with the clips per video, nor with a padding beyond what the devices need.
"""

import json
import math
import os
import shutil

import jax
import numpy as np
import tqdm

from mmv import sharding as shard_lib
from mmv.data import pipeline
from mmv.data import records
from mmv.data import stream as data_stream

ARRAYS = ('features', 'video', 'video_va', 'audio_va', 'audio_vat', 'text', 'has_text', 'label',
          'filename', 'key')
# Per clip: [V, C, ...].
_PER_CLIP = ('features', 'video', 'video_va', 'audio_va', 'audio_vat')
_META = 'meta.json'


def make_embed_fn(model, modality, with_text, spaces=False):
  """jit(variables, batch) → {'features', 'video' (video modality), 'text' (with_text)}, and
  with `spaces` (what mmv.inference embeds) 'video_va' (video), 'audio_va' and 'audio_vat'
  (audio; no 'audio_vat' for a disjoint head). Evaluation leaves them out: its benchmarks use
  none of them, and they would take room in every feature cache."""

  def embed(variables, batch):
    out = {}
    if modality == 'video':
      out['features'], video_va, video_vat = model.apply(
          variables, batch['video'], method=model.embed_video)
      if video_vat is not None:  # Methods without a text tower have no S_vat.
        out['video'] = video_vat
      if spaces and video_va is not None:
        out['video_va'] = video_va
    else:
      out['features'], audio_va, audio_vat = model.apply(variables, batch['audio'],
                                                         method=model.embed_audio)
      if spaces and audio_va is not None:
        out['audio_va'] = audio_va
      if spaces and audio_vat is not None:
        out['audio_vat'] = audio_vat
    if with_text:
      out['text'] = model.apply(variables, batch['text'][:, 0], method=model.embed_text)
    return out

  return jax.jit(embed)


def extract(data_config, split, embed, variables, mesh, *, batch_size, augment_seed=None,
            progress=None):
  """Per-video arrays (see the module doc) of `split` and the number of records that failed
  to decode (not counting the unknown number lost in unreadable shard tails).

  `data_config.num_test_clips` clips per video, or one augmented clip with `augment_seed`;
  `batch_size` videos per batch, whose clips split evenly over the devices of `mesh`.
  """
  if jax.process_count() > 1:
    raise NotImplementedError('run the evaluation binary as a single process (it uses all '
                              'of its host\'s devices)')
  clips = 1 if augment_seed is not None else data_config.num_test_clips
  shard_lib.check_batch_size(batch_size * clips, mesh, 'clips per batch (videos x clips)')
  stream = data_stream.eval_stream(data_config, split, batch_size=batch_size,
                                   augment_seed=augment_seed)
  parts = {k: [] for k in ARRAYS}
  per_video = lambda x: np.asarray(x).reshape((-1, clips) + np.shape(x)[1:])
  batches = pipeline.global_batches(stream, shard_lib.batch_sharding(mesh), data_config)
  # disable=None: a bar on a terminal, none in a log file.
  for batch in tqdm.tqdm(batches, total=stream.num_batches, desc=progress, unit='batch',
                         disable=True if progress is None else None, leave=False):
    # Names (`data.with_names`) stay on the host, out of the jitted function.
    arrays = {k: v for k, v in batch.items() if k not in ('filename', 'label_name')}
    out = jax.device_get(embed(variables, arrays))
    keep = per_video(batch['mask'])[:, 0] > 0
    for k in _PER_CLIP:
      if k in out:
        parts[k].append(per_video(out[k])[keep].astype(np.float32))
    if 'filename' in batch:
      parts['filename'].append(np.asarray([n.decode() for n in
                                           per_video(batch['filename'])[keep, 0]], str))
    if 'text' in out:
      parts['text'].append(per_video(out['text'])[keep, 0].astype(np.float32))
      parts['has_text'].append(per_video(batch['text_mask'])[keep, 0, 0] > 0)
    parts['label'].append(per_video(batch['label'])[keep, 0].astype(np.int32))
    if 'key' in batch:
      parts['key'].append(per_video(batch['key'])[keep, 0].astype(np.int32))
  arrays = {k: np.concatenate(v) for k, v in parts.items() if v}
  return arrays, int(stream.skipped)


def videos_per_batch(batch_clips, clips, devices, num_videos):
  """Videos per batch of at most `batch_clips` clips (`clips` per video) split evenly over
  `devices`, and no more than `num_videos` need (rounded up to that evenness): a batch of
  several videos' clips padded only as far as the devices need. When one group of videos that
  splits evenly (lcm(clips, devices) clips) is more than `batch_clips`, a batch is that group."""
  group = devices // math.gcd(clips, devices)  # Videos whose clips split evenly.
  groups = max(1, batch_clips // (group * clips))
  return group * min(groups, max(1, math.ceil(num_videos / group)))


def settings(data_config, split, *, step, key, modality, with_text, augment_seed=None):
  """What the features of `split` depend on, JSON-ready: a cache entry is valid for these.
  `key`: the rest they depend on (model, checkpoint, protocol, dtype), JSON-serialisable."""
  files = records.split_files(data_config.data_dir, split)
  return json.loads(json.dumps({
      'step': int(step), 'key': key, 'split': split, 'modality': modality,
      'with_text': bool(with_text),
      'augment_seed': augment_seed, 'data': data_config.to_dict(),
      'files': [[os.path.basename(f), os.path.getsize(f)] for f in files]}))


def load(directory, expected_settings):
  """({arrays}, skipped) cached in `directory` for `expected_settings`, or None."""
  try:
    with open(os.path.join(directory, _META)) as f:
      meta = json.load(f)
  except (OSError, ValueError):
    return None
  if meta.get('settings') != expected_settings:
    return None
  arrays = {k: np.load(os.path.join(directory, f'{k}.npy'), mmap_mode='r', allow_pickle=False)
            for k in meta['arrays']}
  return arrays, int(meta['skipped'])


def save(directory, expected_settings, arrays, skipped=0):
  """Writes the arrays, then the metadata that makes the entry valid."""
  if os.path.exists(directory):
    shutil.rmtree(directory)
  os.makedirs(directory)
  for k, v in arrays.items():
    np.save(os.path.join(directory, f'{k}.npy'), v, allow_pickle=False)
  meta = {'settings': expected_settings, 'arrays': sorted(arrays), 'skipped': skipped,
          'rows': int(len(next(iter(arrays.values()))))}
  with open(os.path.join(directory, _META), 'w') as f:
    json.dump(meta, f, indent=1)


def cached_extract(directory, data_config, split, embed_fn, *, step, key, modality, with_text,
                   batch_clips, num_videos, augment_seed=None, **extract_kwargs):
  """`extract` through the cache entry `directory` (None: no cache); returns
  (arrays, skipped, loaded from cache). `embed_fn()` gives (embed, variables, mesh), called
  only when the features must be computed; a batch holds at most `batch_clips` clips of the
  `num_videos` videos (`videos_per_batch`)."""
  wanted = settings(data_config, split, step=step, key=key, modality=modality,
                    with_text=with_text, augment_seed=augment_seed)
  if directory is not None:
    hit = load(directory, wanted)
    if hit is not None:
      return hit + (True,)
  embed, variables, mesh = embed_fn()
  clips = 1 if augment_seed is not None else data_config.num_test_clips
  batch_size = videos_per_batch(batch_clips, clips, mesh.devices.size, num_videos)
  arrays, skipped = extract(data_config, split, embed, variables, mesh, batch_size=batch_size,
                            augment_seed=augment_seed, **extract_kwargs)
  if directory is not None:
    save(directory, wanted, arrays, skipped)
  return arrays, skipped, False
