"""Iterating the pipeline: data positions for exact resume, skipped records, eval padding.

`train_stream` yields a process's training batches (numpy) and knows, after each, the
position of every source's record stream; that position (with the count of skipped records)
is what a checkpoint saves (`gather_state`) and what a resumed run starts from, so its batches
are exactly those the uninterrupted run would have seen, and nothing consumed is decoded again.

A record that fails (not a SequenceExample, an undecodable JPEG, no frames) is dropped by the
pipeline and shows here as a gap in the stream's element numbers: it is counted in `skipped`,
or, with `data.strict`, raises `DataError` naming the file and the record. A shard that ends
early (truncated, corrupt) loses an unknown number of records: its tail is counted apart, in
`unreadable` (once per pass), and named ('FILE: unreadable from record N (byte B of S)').
Training data in which no record makes an example is `NoExampleError` at once: repeated over
epochs it would spin forever without a batch.

`eval_stream` reads a split once. Every process reads a disjoint share of the files and yields
the same number of batches: short ones are padded with rows of mask 0, so no example is dropped
and none is counted twice.
"""

import math

import jax
from jax.experimental import multihost_utils
import numpy as np
import tensorflow as tf

from mmv.data import example as example_ops
from mmv.data import mixture
from mmv.data import pipeline
from mmv.data import records
from mmv.data import views as view_ops

# Data states kept for batches not yet consumed (the device prefetch runs a few batches ahead).
_HISTORY = 256


class DataError(ValueError):
  """A record that cannot be read, while `data.strict` is set."""


class NoExampleError(ValueError):
  """Training files none of whose records makes an example."""


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
  start: {name: (part, index)} (see `mmv.data.records`); skipped, unreadable: the counts so far
  (a resumed run's); contents: the `records.Contents` of the (finite) stream, for evaluation;
  num_batches and pad_rows: pad the stream to that many batches of that many rows.

  After each batch: `skipped` counts the records that failed to decode, `unreadable` the
  unreadable shard tails met (a shard's once per pass), and `tails` names those met.
  """

  def __init__(self, dataset, sources, *, start, skipped=0, unreadable=0, strict=False,
               contents=None, num_batches=None, pad_rows=None):
    self._iterator = dataset.as_numpy_iterator()
    self._spec = dataset.element_spec
    self._sources = sources
    self._next = {name: tuple(start[name]) for name, _, _ in sources}
    self._expected_seq = {name: 0 for name, _, _ in sources}
    self._tails_seen = {name: 0 for name, _, _ in sources}
    self._strict = strict
    self._contents = contents
    self._num_batches = num_batches
    self._pad_rows = pad_rows
    self.skipped = skipped
    self.unreadable = unreadable
    self.tails = {}  # Descriptions of the unreadable tails met, in order (a dict as a set).
    self._count = 0
    self._history = {0: self.state()}
    self._exhausted = False

  @property
  def num_batches(self):
    """Batches a padded (evaluation) stream yields; None for a training stream."""
    return self._num_batches

  def state(self):
    """{'positions': {source: [part, index of the next record]}, 'skipped': records,
    'unreadable': shard tails}."""
    return {'positions': {k: [int(v) for v in p] for k, p in self._next.items()},
            'skipped': int(self.skipped), 'unreadable': int(self.unreadable)}

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
      seq, part, index, tails, last_tail = (
          book[k][begin:begin + rows] for k in ('_seq', '_part', '_index', '_tails',
                                                '_last_tail'))
      begin += rows
      gaps = np.diff(np.concatenate([[self._expected_seq[name] - 1], seq])) - 1
      # A row's `_tails` went up by the tails among the elements dropped before it; a row names
      # the latest of them only (two tails with no example between: one is counted, unnamed).
      new_tails = np.diff(np.concatenate([[self._tails_seen[name]], tails]))
      if gaps.any():
        first = int(np.flatnonzero(gaps)[0])
        before = self._next[name] if first == 0 else (part[first - 1], index[first - 1] + 1)
        self._skip(int(gaps.sum()), int(new_tails.sum()), describe, before)
      for tail in last_tail[new_tails > 0]:
        self._name_tail(tail.decode())
      self._next[name] = (int(part[-1]), int(index[-1]) + 1)
      self._expected_seq[name] = int(seq[-1]) + 1
      self._tails_seen[name] = int(tails[-1])

  def _finish(self):
    """At the end of a finite stream: count what was dropped after the last batch."""
    if self._exhausted:
      return
    self._exhausted = True
    if self._contents is not None:
      (name, _, describe), = self._sources
      missing = self._contents.elements - self._expected_seq[name]
      if missing:
        self._skip(missing, len(self._contents.tails) - self._tails_seen[name], describe,
                   self._next[name])
      for tail in self._contents.tails:
        self._name_tail(tail)

  def _skip(self, count, tails, describe, position):
    """`count` elements dropped from `position` on, `tails` of them unreadable shard tails."""
    if self._strict:
      raise DataError(f'cannot read {describe(position)} (data.strict is set; unset it to '
                      'skip and count such records)')
    self.skipped += count - tails
    self.unreadable += tails

  def _name_tail(self, tail):
    if tail not in self.tails:
      self.tails[tail] = None
      print(f'{tail}: the rest of this shard cannot be read and is skipped', flush=True)


def _source_seed(seed, source_index, process_index):
  return int(np.random.SeedSequence([seed, source_index, process_index]).generate_state(1)[0])


def _options(ds, prefetch):
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options).prefetch(prefetch)


def _require_an_example(c, name, files, *, seed, tokenizer):
  """Raises `NoExampleError` unless a record of `files` makes an example: one pass in file order
  up to the first example (at once on readable data), or to the end. Eagerly, record by
  record: a tf.data pipeline would cost seconds of tracing for one example."""
  make_example = example_ops.make_example_fn(c, tokenizer, train=True, seed=seed,
                                             views=view_ops.parse(c))
  for element in records.record_stream(files, train=False):
    try:
      make_example(element)
      return
    except tf.errors.OpError:
      continue
  contents = records.read_contents(files)
  shown = ', '.join(files[:4]) + (f', ... ({len(files)} shards)' if len(files) > 4 else '')
  tails = '; '.join(contents.tails[:4]) + ('; ...' if len(contents.tails) > 4 else '')
  raise NoExampleError(
      f'training source {name!r}: no record of {shown} makes an example, so training would wait '
      f'forever: {contents.records} records read'
      + (' (each failed to decode: set data.strict to see why)' if contents.records else '')
      + (f', {len(contents.tails)} shards unreadable ({tails})' if contents.tails else ''))


def train_stream(c, *, batch_size, seed, process_index=0, process_count=1, state=None,
                 key_labels=None):
  """This process's training batches of `batch_size` examples, from `state` (see
  `gather_state`) or from the start; `NoExampleError` if a source has no readable example.

  `key_labels` = (keys int64 [n], labels int32 [n]) adds `pseudo_label` to every example: the
  label of its record's key, −1 for a record not among `keys` (`mmv.data.keys`).
  """
  sources = mixture.train_sources(c)
  counts = mixture.batch_counts([s.weight for s in sources], batch_size)
  start, skipped, unreadable = {s.name: (0, 0) for s in sources}, 0, 0
  if state is not None:
    if state['sources'] != [s.name for s in sources]:
      raise ValueError(f'the checkpoint read sources {state["sources"]}, the config reads '
                       f'{[s.name for s in sources]}')
    if len(state['positions']) != process_count:
      raise ValueError(f'the checkpoint was written by {len(state["positions"])} processes; '
                       f'resume with as many (now {process_count})')
    start = dict(zip(state['sources'], state['positions'][process_index]))
    skipped = state['skipped'][process_index]
    # Checkpoints written before the tails were counted apart have none.
    unreadable = state.get('unreadable', [0] * process_count)[process_index]
  tokenizer = pipeline.make_tokenizer(c)
  datasets, described = [], []
  for i, (source, rows) in enumerate(zip(sources, counts)):
    files = records.process_files(records.split_files(source.data_dir, source.split),
                                  process_index, process_count)
    kw = dict(train=True, seed=_source_seed(seed, i, process_index), tokenizer=tokenizer)
    _require_an_example(c, source.name, files, seed=kw['seed'], tokenizer=tokenizer)
    datasets.append(pipeline.source_dataset(c, files, batch_size=rows, start=start[source.name],
                                            key_labels=key_labels, **kw))
    described.append((source.name, rows,
                      lambda position, files=files, kw=kw: pipeline.describe_record(
                          c, files, position, **kw)))
  ds = _options(mixture.combine(datasets), c.prefetch)
  return Stream(ds, described, start=start, skipped=skipped, unreadable=unreadable,
                strict=c.strict)


def eval_stream(c, split, *, batch_size, process_index=0, process_count=1, augment_seed=None):
  """Every example of `split` once, in batches of `batch_size` examples (`batch_size ·
  num_test_clips` rows), padded so that every process yields the same number of batches.

  With `augment_seed`, each example is one clip augmented as in training (random offset, crop,
  flip, colour) drawn from that seed: one augmented pass, e.g. for a linear probe's training set.
  """
  shares = [records.process_files(records.split_files(c.data_dir, split), p, process_count)
            for p in range(process_count)]
  # Each process counts every share (reading, not decoding), so they agree without talking.
  contents = [records.read_contents(files) for files in shares]
  files = shares[process_index]
  augment = augment_seed is not None
  kw = dict(train=False, seed=int(augment_seed or 0), tokenizer=pipeline.make_tokenizer(c),
            augment=augment)
  ds = _options(pipeline.source_dataset(c, files, batch_size=batch_size, **kw), c.prefetch)
  describe = lambda position: pipeline.describe_record(c, files, position, **kw)
  return Stream(ds, [(split, None, describe)], start={split: (0, 0)}, strict=c.strict,
                contents=contents[process_index],
                num_batches=math.ceil(max(x.elements for x in contents) / batch_size),
                pad_rows=batch_size * (1 if augment else c.num_test_clips))


# The order a checkpoint's data positions refer to, saved beside them (as 'data_order'):
# (part, index) of `mmv.data.records`, its parts as equal as possible. Checkpoints without it
# hold (epoch, index) positions in a shuffle of the whole epoch; those of order 'parts',
# positions in parts of `records.CYCLE` files but the last (files mod CYCLE).
ORDER = 'even_parts'
_PARTS_OF_CYCLE = 'parts'


def upgrade_state(c, state, order):
  """A checkpoint's data `state`, saved in data `order`, in the current order → (state, a line
  to log or None).

  A source whose layout is unchanged for a process keeps its position exactly: one part per
  epoch (at most `records.CYCLE` shards), or, from order 'parts', parts that were equal
  already (a multiple of CYCLE shards). Elsewhere the records before the old position lie in
  other parts, so the source restarts where no record of the epoch is missed, and the line
  says so: at the saved epoch's first part after a whole-epoch shuffle; at the saved part after
  order 'parts' (new part j starts at most CYCLE·j files into the epoch's order, where old
  part j started), reading again the records of its files read before.
  """
  if state is None or order == ORDER:
    return state, None
  by_name = {s.name: s for s in mixture.train_sources(c)}
  if not set(state['sources']) <= set(by_name):
    return state, None  # `train_stream` names the mismatch.
  count = len(state['positions'])
  restarted = set()
  positions = []
  for process, row in enumerate(state['positions']):
    positions.append([])
    for name, (at, index) in zip(state['sources'], row):
      source = by_name[name]
      num_files = len(records.process_files(records.split_files(source.data_dir, source.split),
                                            process, count))
      parts = records.parts_per_epoch(num_files)
      if parts == 1 or (order == _PARTS_OF_CYCLE and num_files % records.CYCLE == 0):
        positions[-1].append([at, index])
      elif order == _PARTS_OF_CYCLE:
        restarted.add(f'{name} (part {at})')
        positions[-1].append([at, 0])
      else:
        restarted.add(f'{name} (epoch {at})')
        positions[-1].append([at * parts, 0])
  note = None
  if restarted:
    note = (f'the checkpoint\'s data positions are in the order of an older version, which '
            f'cannot be continued exactly: {", ".join(sorted(restarted))} restart at the '
            'beginning of the saved epoch or part (records read before may be read again), '
            'in the new order')
  return {**state, 'positions': positions}, note


def gather_state(state):
  """Every process's `Stream.state()` → the JSON a checkpoint keeps (all processes must call
  it): {'sources': [names], 'positions': [per process: [[part, index] per source]],
  'skipped': [per process], 'unreadable': [per process]}."""
  names = list(state['positions'])
  local = ([v for name in names for v in state['positions'][name]] +
           [state['skipped'], state['unreadable']])
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
          'skipped': [int(r[-2]) for r in rows], 'unreadable': [int(r[-1]) for r in rows]}
