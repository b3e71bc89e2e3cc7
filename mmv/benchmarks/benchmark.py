"""What a benchmark is, what its reader finds in the official layout, and what `prepare` gives.

A reader (one module per benchmark) turns the official files of a dataset into a `Layout`:
the clips to convert, each in one *part*, and for every official split the parts that make its
training and test sets. A part is a set of videos that belong to the same side of every split
(for UCF101 split 1 test + splits 2 and 3 train is one part), so each video is converted
once, into its part's shards, and a split is a union of parts. Reading a layout opens no
media file.
"""

import dataclasses
import os
from typing import Callable, Optional

from mmv.ingest import media

KINDS = ('linear', 'retrieval')  # What is prepared: train and test sides, or test alone.
# What the evaluation binary measures: a linear probe (train → test), zero-shot retrieval in
# S_vat (each test clip against its caption) and zero-shot classification (class names as
# captions, nearest per test clip); an MLP probe of multi-label classes (train → test, AudioSet).
PROTOCOLS = ('linear', 'retrieval', 'zero_shot', 'mlp')
MODALITIES = ('video', 'audio', 'image')  # image: 1-frame records (mmv.ingest.images).
ROLES = ('train', 'test')  # Also the shard names a prepared split has: train-*, test-*.


@dataclasses.dataclass(frozen=True)
class Layout:
  """What a reader found in the official files.

  clips: {part: [ClipSpec]}; splits: {split: {'train': [parts], 'test': [parts]}} ('test'
  alone for retrieval); class_names: in the official order, index = label id.
  """
  clips: dict
  splits: dict
  class_names: tuple = ()


def layout_by_membership(clips, membership, split_names, class_names):
  """The Layout where each part holds the clips on the same side of every split.

  clips: {key: ClipSpec}; membership: {key: {split: 'train' | 'test'}} (a split a clip is not
  in is left out). A part is named after its membership, e.g. `test1_train2_train3`.
  """
  parts = {}
  for key in sorted(clips):
    roles = membership[key]
    if roles:
      name = '_'.join(f'{roles[s]}{s}' for s in split_names if s in roles)
      parts.setdefault(name, []).append(clips[key])
  splits = {}
  for split in split_names:
    splits[split] = {role: sorted(name for name in parts
                                  if f'{role}{split}' in name.split('_'))
                     for role in ROLES}
  return Layout(clips=parts, splits=splits, class_names=tuple(class_names))


@dataclasses.dataclass(frozen=True)
class Options:
  """How clips are converted; fps and audio default to the benchmark's choice."""
  fps: Optional[float] = None  # Frames per second stored.
  short_side: int = 256  # Short side of stored frames (0: keep).
  sample_rate: int = 48000  # Audio sample rate stored.
  jpeg_qscale: int = 3  # JPEG quantiser scale, 2 (best) to 31.
  audio: Optional[bool] = None  # Store soundtracks of videos (default: audio benchmarks only).
  num_workers: int = dataclasses.field(default_factory=os.cpu_count)  # Decoding processes.
  clips_per_shard: int = 100
  progress: bool = True  # Progress bars on stderr.


@dataclasses.dataclass(frozen=True)
class Shards:
  """One side (train or test) of a prepared split.

  `split` is the name the pipeline reads (`data_dir/split-*-of-*`); `num_clips` records were
  written; `skipped` lists (clip name, reason) for clips that could not be converted (a video
  missing from disk, an unreadable file). The split lists both: `num_listed`.
  """
  split: str
  pattern: str
  files: tuple
  num_clips: int
  skipped: tuple = ()

  @property
  def num_skipped(self):
    return len(self.skipped)

  @property
  def num_listed(self):
    return self.num_clips + self.num_skipped


@dataclasses.dataclass(frozen=True)
class Prepared:
  """A split of a benchmark ready for the pipeline: set `data.data_dir = data_dir` and read
  `train.split` / `test.split` (always 'train' / 'test'); `train` is None for retrieval.

  source: 'raw' (converted from the official layout), 'tfds' (read from a TFDS build) or
  'shards' (already shards, used in place); fps: frame rate of the stored frames; departures:
  how the stored frames depart from the benchmark's published input (a TFDS build's frames
  resized to a fixed size), for the record's `differs_from_published`.
  """
  benchmark: str
  split: str
  data_dir: str
  train: Optional[Shards]
  test: Shards
  class_names: tuple
  source: str
  fps: float
  departures: tuple = ()

  def summary(self):
    """The counts of the conversion, JSON-serialisable: per side the clips the split lists,
    those written and those not (what evaluation then reads is in its record's videos_*)."""
    out = {'benchmark': self.benchmark, 'split': self.split, 'source': self.source,
           'data_dir': self.data_dir, 'num_classes': len(self.class_names)}
    for side in (self.train, self.test):
      if side is not None:
        out[f'{side.split}_listed'] = side.num_listed
        out[f'{side.split}_clips'] = side.num_clips
        out[f'{side.split}_skipped'] = side.num_skipped
    return out


@dataclasses.dataclass(frozen=True)
class Benchmark:
  """A downstream benchmark: its kind, the modality its features come from, its official
  splits, the protocols measured on it, and how to prepare it from a data directory.

  `prepare_fn(benchmark, data_dir, cache_dir, splits, options)` → {split: Prepared}.
  `protocols` defaults to `(kind,)`; 'linear' needs kind 'linear' (a training side).
  """
  name: str
  kind: str
  modality: str
  splits: tuple
  fps: float
  layout: str  # The directory layout `prepare` expects, for messages and docs.
  prepare_fn: Callable = dataclasses.field(repr=False, compare=False)
  protocols: tuple = ()

  def __post_init__(self):
    if self.kind not in KINDS or self.modality not in MODALITIES:
      raise ValueError(f'{self.name}: kind must be one of {KINDS} and modality one of '
                       f'{MODALITIES}, got {self.kind!r}, {self.modality!r}')
    if not self.protocols:
      object.__setattr__(self, 'protocols', (self.kind,))
    unknown = set(self.protocols) - set(PROTOCOLS)
    if unknown or ('linear' in self.protocols and self.kind != 'linear'):
      raise ValueError(f'{self.name}: protocols must be among {PROTOCOLS} (linear only for '
                       f'kind linear), got {self.protocols}')

  def prepare(self, data_dir, cache_dir=None, split=None, **options):
    """{split: Prepared} for `split` (one of `splits`), or for every split when None.

    Clips are converted once into `cache_dir/NAME` (default `data_dir/.mmv_cache/NAME`); a
    later call with the same inputs and options reads the cache. `options` are the fields of
    `Options`.
    """
    if split is None:
      splits = None
    elif str(split) in self.splits:
      splits = (str(split),)
    else:
      raise ValueError(f'{self.name} has splits {self.splits}, not {split!r}')
    return self.prepare_fn(self, data_dir, cache_dir, splits, Options(**options))


def clip(name, path, start=0.0, end=None, labels=(), captions=()):
  """A ClipSpec (the converter's input) with tuples."""
  return media.ClipSpec(name=name, path=path, start=float(start),
                        end=None if end is None else float(end), labels=tuple(labels),
                        captions=tuple(captions))
