"""Iterating the pipeline: data positions for exact resume, skipped records, eval padding.

`train_stream` yields a process's training batches (numpy) and knows, after each, the
position of every source's record stream; that position (with the count of skipped records)
is what a checkpoint saves (`gather_state`) and what a resumed run starts from, so its batches
are exactly those the uninterrupted run would have seen, and nothing consumed is decoded again.

A record that fails (not a SequenceExample, an undecodable JPEG, no frames, a shard that ends
early) is dropped by the pipeline and shows here as a gap in the stream's element numbers: it
is counted, or, with `data.strict`, raises `DataError` naming the file and the record.

`eval_stream` reads a split once. Every process reads a disjoint share of the files and yields
the same number of batches: short ones are padded with rows of mask 0, so no example is dropped
and none is counted twice.
"""

import math

import jax
from jax.experimental import multihost_utils
import numpy as np
import tensorflow as tf

from mmv.data import mixture
from mmv.data import pipeline
from mmv.data import records

# Data states kept for batches not yet consumed (the device prefetch runs a few batches ahead).
_HISTORY = 256


class DataError(ValueError):
  """A record that cannot be read, while `data.strict` is set."""


def _zeros(element_spec, rows):
  """A batch of `rows` zero rows (mask 0) with the structure of the dataset's batches."""
  batch = {}
  for k, spec in element_spec.items():
    if k in pipeline.BOOKKEEPING:
      continue
    shape = (rows,) + tuple(spec.shape[1:])
    batch[k] = (np.full(shape, b'', object) if spec.dtype == tf.string
                else np.zeros(shape, spec.dtype.as_numpy_dtype))
  return batch


class Stream:
  """An iterator of host batches (numpy dicts) with the data state after each.

  sources: [(name, rows per batch or None for all, describe(position) → str)], in row order.
  start: {name: (epoch, index)}; total: elements of the (finite) stream, for evaluation;
  num_batches and pad_rows: pad the stream to that many batches of that many rows.
  """

  def __init__(self, dataset, sources, *, start, skipped=0, strict=False, total=None,
               num_batches=None, pad_rows=None):
    self._iterator = dataset.as_numpy_iterator()
    self._spec = dataset.element_spec
    self._sources = sources
    self._next = {name: tuple(start[name]) for name, _, _ in sources}
    self._expected_seq = {name: 0 for name, _, _ in sources}
    self._strict = strict
    self._total = total
    self._num_batches = num_batches
    self._pad_rows = pad_rows
    self.skipped = skipped
    self._count = 0
    self._history = {0: self.state()}
    self._exhausted = False

  @property
  def num_batches(self):
    """Batches a padded (evaluation) stream yields; None for a training stream."""
    return self._num_batches

  def state(self):
    """{'positions': {source: [epoch, index of the next record]}, 'skipped': records}."""
    return {'positions': {k: [int(v) for v in p] for k, p in self._next.items()},
            'skipped': int(self.skipped)}

  def state_after(self, num_batches):
    """The state once `num_batches` batches of this stream have been consumed."""
    return self._history[num_batches]

  def __iter__(self):
    return self

  def __next__(self):
    if self._num_batches is not None and self._count >= self._num_batches:
      self._finish()  # Every real example has been yielded: ceil(total / batch) ≤ num_batches.
      raise StopIteration
    batch = None if self._exhausted else next(self._iterator, None)
    if batch is None:
      self._finish()
      if self._num_batches is None:
        raise StopIteration
      batch = _zeros(self._spec, self._pad_rows)
    else:
      self._account(batch)
      if self._pad_rows is not None:
        batch = pipeline.pad_batch(batch, self._pad_rows)
    self._count += 1
    self._history[self._count] = self.state()
    self._history.pop(self._count - _HISTORY, None)
    return batch

  def _account(self, batch):
    book = {k: batch.pop(k) for k in pipeline.BOOKKEEPING}
    begin = 0
    for name, rows, describe in self._sources:
      rows = len(book['_seq']) if rows is None else rows
      seq, epoch, index = (book[k][begin:begin + rows] for k in ('_seq', '_epoch', '_index'))
      begin += rows
      gaps = np.diff(np.concatenate([[self._expected_seq[name] - 1], seq])) - 1
      if gaps.any():
        first = int(np.flatnonzero(gaps)[0])
        before = self._next[name] if first == 0 else (epoch[first - 1], index[first - 1] + 1)
        self._skip(int(gaps.sum()), describe, before)
      self._next[name] = (int(epoch[-1]), int(index[-1]) + 1)
      self._expected_seq[name] = int(seq[-1]) + 1

  def _finish(self):
    """At the end of a finite stream: count what was dropped after the last batch."""
    if self._exhausted:
      return
    self._exhausted = True
    if self._total is not None:
      (name, _, describe), = self._sources
      missing = self._total - self._expected_seq[name]
      if missing:
        self._skip(missing, describe, self._next[name])

  def _skip(self, count, describe, position):
    if self._strict:
      raise DataError(f'cannot read {describe(position)} (data.strict is set; unset it to '
                      'skip and count such records)')
    self.skipped += count


def _source_seed(seed, source_index, process_index):
  return int(np.random.SeedSequence([seed, source_index, process_index]).generate_state(1)[0])


def _options(ds, prefetch):
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options).prefetch(prefetch)


def train_stream(c, *, batch_size, seed, process_index=0, process_count=1, state=None):
  """This process's training batches of `batch_size` examples, from `state` (see
  `gather_state`) or from the start."""
  sources = mixture.train_sources(c)
  counts = mixture.batch_counts([s.weight for s in sources], batch_size)
  start, skipped = {s.name: (0, 0) for s in sources}, 0
  if state is not None:
    if state['sources'] != [s.name for s in sources]:
      raise ValueError(f'the checkpoint read sources {state["sources"]}, the config reads '
                       f'{[s.name for s in sources]}')
    if len(state['positions']) != process_count:
      raise ValueError(f'the checkpoint was written by {len(state["positions"])} processes; '
                       f'resume with as many (now {process_count})')
    start = dict(zip(state['sources'], state['positions'][process_index]))
    skipped = state['skipped'][process_index]
  tokenizer = pipeline.make_tokenizer(c)
  datasets, described = [], []
  for i, (source, rows) in enumerate(zip(sources, counts)):
    files = records.process_files(records.split_files(source.data_dir, source.split),
                                  process_index, process_count)
    kw = dict(train=True, seed=_source_seed(seed, i, process_index), tokenizer=tokenizer)
    datasets.append(pipeline.source_dataset(c, files, batch_size=rows, start=start[source.name],
                                            **kw))
    described.append((source.name, rows,
                      lambda position, files=files, kw=kw: pipeline.describe_record(
                          c, files, position, **kw)))
  ds = _options(mixture.combine(datasets), c.prefetch)
  return Stream(ds, described, start=start, skipped=skipped, strict=c.strict)


def eval_stream(c, split, *, batch_size, process_index=0, process_count=1, augment_seed=None):
  """Every example of `split` once, in batches of `batch_size` examples (`batch_size ·
  num_test_clips` rows), padded so that every process yields the same number of batches.

  With `augment_seed`, each example is one clip augmented as in training (random offset, crop,
  flip, colour) drawn from that seed: one augmented pass, e.g. for a linear probe's training set.
  """
  shares = [records.process_files(records.split_files(c.data_dir, split), p, process_count)
            for p in range(process_count)]
  # Each process counts every share (reading, not decoding), so they agree without talking.
  totals = [records.count_records(files) for files in shares]
  files = shares[process_index]
  augment = augment_seed is not None
  kw = dict(train=False, seed=int(augment_seed or 0), tokenizer=pipeline.make_tokenizer(c),
            augment=augment)
  ds = _options(pipeline.source_dataset(c, files, batch_size=batch_size, **kw), c.prefetch)
  describe = lambda position: pipeline.describe_record(c, files, position, **kw)
  return Stream(ds, [(split, None, describe)], start={split: (0, 0)}, strict=c.strict,
                total=totals[process_index],
                num_batches=math.ceil(max(totals) / batch_size),
                pad_rows=batch_size * (1 if augment else c.num_test_clips))


def gather_state(state):
  """Every process's `Stream.state()` → the JSON a checkpoint keeps (all processes must call
  it): {'sources': [names], 'positions': [per process: [[epoch, index] per source]],
  'skipped': [per process]}."""
  names = list(state['positions'])
  local = [v for name in names for v in state['positions'][name]] + [state['skipped']]
  local = np.asarray(local, np.int64)
  if np.any(local >= 2**31):
    raise OverflowError(f'data position {local} does not fit int32')
  if jax.process_count() > 1:
    rows = np.asarray(multihost_utils.process_allgather(local.astype(np.int32)))
  else:
    rows = local[None]
  return {'sources': list(names),
          'positions': [[[int(r[2 * i]), int(r[2 * i + 1])] for i in range(len(names))]
                        for r in rows],
          'skipped': [int(r[-1]) for r in rows]}
