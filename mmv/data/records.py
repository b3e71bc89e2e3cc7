"""The record stream: a process's share of the shards, in a seeded order, with positions.

Training reads the files epoch after epoch, in parts. Epoch e visits the files in an order
drawn from (seed, e) and cuts that order into P = ceil(files / `CYCLE`) parts as equal as
possible (`part_sizes`: 9 files make parts of 5 and 4, not 8 and 1), so that every part
interleaves as many files as the others, or one fewer, and no batch at an epoch's end comes
from one file. The stream reads part after part, part p being part p mod P of epoch p div P.
A part interleaves its files record by record and passes them through a shuffle buffer
seeded by (seed, p), so every record gets a position (part, index within the part) that
names it. A stream started at position (p, i) yields exactly what the uninterrupted stream
yields from there on, and getting there reads (but does not parse or decode) the first i
records of part p only: a resume re-reads at most one part's files, whatever the size of the
epoch. With at most `CYCLE` files there is one part per epoch, and the part is the epoch.

The shuffle is thus a buffer of `shuffle_buffer` records sliding over the interleave of a
part's files (at most `CYCLE`), as it slid over a whole epoch before parts, restarted at each
part: records of different parts of an epoch never swap, but the parts' files and their order
are drawn anew every epoch. The next part is prepared (its buffer filled) while one is read,
so that no part waits for its buffer: up to two buffers' records are in memory (tf.data's own
interleave would prepare two parts ahead, three buffers).

Evaluation reads the files once, in order, as one part (position (0, index)).

A shard that ends early (a truncated file, or a record failing its CRC, after which TFRecord
cannot resynchronise) is read up to the damage; the stream then emits one element marked
`damaged` that names the file, and goes on with the next file. The reader turns it into a
skipped example, or an error when strict. How many records the unreadable tail held cannot be
known (the lengths that would tell are in the damaged bytes), so a tail is not counted as
records: it is `tail`, 'FILE: unreadable from record N (byte B of S)', and every element
carries `tails`, the number of damaged markers met so far, with `last_tail`, the latest one's
description, so that the reader tells a lost tail from a record that failed to decode.
"""

import dataclasses
import os

import numpy as np

import tensorflow as tf
from tensorflow.python.util import deprecation  # pylint: disable=g-direct-tensorflow-import

from mmv.data import format as fmt
from mmv.data import shard_names

# Files read at once: a part of an epoch interleaves this many, record by record.
CYCLE = 8
# A TFRecord is its data plus 16 bytes: the length (8), the length's CRC (4), the data's CRC (4).
_RECORD_OVERHEAD = 16


def split_files(data_dir, split):
  """The shards `data_dir/split-*-of-*`, sorted; an error if there are none, or if they are not
  one complete set: two sets (another shard count) beside each other, or a set missing a
  shard, as a conversion cut short while it replaced a set could leave them."""
  paths = tf.io.gfile.glob(os.path.join(data_dir, f'{split}-*-of-*'))
  sets = shard_names.shard_sets([os.path.basename(path) for path in paths], split)
  if not sets and paths:
    raise ValueError(f'{data_dir!r} holds {os.path.basename(paths[0])} ({len(paths)} such '
                     f'files) but no shard named {split}-NNNNN-of-NNNNN: rename them so (e.g. '
                     'without an extension), as the converters write them')
  if not sets:
    raise FileNotFoundError(f'no shards {split}-*-of-* in {data_dir!r}; make them with '
                            '`python -m mmv.ingest.convert` or `python -m mmv.data.synthetic` '
                            '(see the README)')
  if len(sets) > 1:
    named = ' and '.join(f'{split}-*-of-{count:05d} ({len(shards)} files)'
                         for count, shards in sorted(sets.items()))
    raise ValueError(f'{data_dir!r} holds more than one shard set of split {split!r}: '
                     f'{named}; run the conversion that replaced one again (it finishes the '
                     'replacement), or delete the set you do not want')
  (count, shards), = sets.items()
  if sorted(shards) != list(range(count)):
    missing = [fmt.shard_name(split, i, count) for i in range(count) if i not in shards]
    beyond = [shards[i] for i in sorted(shards) if i >= count]
    problems = ([f'missing {", ".join(missing[:2])}{", ..." if len(missing) > 2 else ""}']
                if missing else []) + [f'{name} beyond the count' for name in beyond[:1]]
    raise ValueError(f'{data_dir!r} holds {len(shards)} files of the {count} shards '
                     f'{split}-*-of-{count:05d} ({"; ".join(problems)}); run the conversion '
                     'that wrote them again (it finishes a replacement cut short)')
  return [os.path.join(data_dir, shards[i]) for i in range(count)]


def process_files(files, process_index, process_count):
  """This process's disjoint share of the files."""
  if len(files) < process_count:
    raise ValueError(f'{len(files)} shards cannot be shared by {process_count} processes')
  return files[process_index::process_count]


def _file_records(path, size):
  """The records of one file, then a `damaged` marker if they stop before its end."""
  records = tf.data.TFRecordDataset(path).ignore_errors().map(lambda r: (False, r))
  ds = records.concatenate(tf.data.Dataset.from_tensors((True, tf.constant(b''))))

  def account(state, element):
    consumed, count = state
    is_end, record = element
    length = tf.strings.length(record, unit='BYTE')
    size_after = consumed + tf.where(is_end, tf.constant(0, tf.int64),
                                    tf.cast(length, tf.int64) + _RECORD_OVERHEAD)
    damaged = tf.logical_and(is_end, tf.not_equal(consumed, size))
    tail = tf.strings.join([path, ': unreadable from record ', tf.strings.as_string(count),
                            ' (byte ', tf.strings.as_string(consumed), ' of ',
                            tf.strings.as_string(size), ')'])
    out = {'file': path, 'record_number': count, 'record': record, 'damaged': damaged,
           'tail': tf.where(damaged, tail, '')}
    return (size_after, count + tf.cast(tf.logical_not(is_end), tf.int64)), (is_end, out)

  ds = ds.scan((tf.constant(0, tf.int64), tf.constant(0, tf.int64)), account)
  # The end marker of an intact file has done its job.
  ds = ds.filter(lambda is_end, out: tf.logical_or(tf.logical_not(is_end), out['damaged']))
  return ds.map(lambda is_end, out: out)


def parts_per_epoch(num_files):
  """Parts a training epoch over `num_files` files is read in: one per `CYCLE` files."""
  return -(-num_files // CYCLE)


def part_sizes(num_files):
  """Files in each part of an epoch over `num_files` files: `parts_per_epoch` parts as equal
  as possible, the first ones a file more when they cannot all be equal."""
  parts = parts_per_epoch(num_files)
  size, remainder = divmod(num_files, parts)
  return [size + (j < remainder) for j in range(parts)]


def record_stream(files, *, train, seed=0, shuffle_buffer=0, start=(0, 0)):
  """Elements {file, record_number, record, damaged, tail, part, index, seq, tails,
  last_tail} from `files`.

  `part` and `index` are the position; `seq` counts the elements of this stream from 0
  (after `start`), so a gap in `seq` downstream means examples were dropped; `tails` counts the
  damaged markers among this stream's elements up to this one, and `last_tail` describes the
  latest, so that the gap's unreadable tails are told from its failed records.
  """
  sizes = [tf.io.gfile.stat(f).length for f in files]
  files_t = tf.constant(files)
  sizes_t = tf.constant(sizes, tf.int64)
  n = len(files)
  per_epoch = parts_per_epoch(n)
  starts = tf.constant(np.cumsum([0] + part_sizes(n)), tf.int64)

  def part(p):
    if train:
      epoch = p // per_epoch
      order = tf.argsort(tf.random.stateless_uniform(
          [n], tf.stack([tf.cast(seed, tf.int64), epoch])))
      j = p % per_epoch
      order = order[starts[j]:starts[j + 1]]
    else:
      order = tf.range(n)
    ds = tf.data.Dataset.from_tensor_slices((tf.gather(files_t, order), tf.gather(sizes_t, order)))
    ds = ds.interleave(_file_records, cycle_length=min(n, CYCLE), block_length=1,
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if train and shuffle_buffer > 1:
      ds = ds.shuffle(shuffle_buffer, seed=tf.cast(seed, tf.int64) * 1_000_003 + p)
    ds = ds.enumerate().map(lambda i, x: {**x, 'part': p, 'index': i})
    # Only the first part is entered at an index other than 0: the resume's skip stays in it.
    return ds.skip(tf.where(tf.equal(p, start[0]), tf.cast(start[1], tf.int64), 0))

  parts = tf.data.Dataset.counter(start[0]) if train else tf.data.Dataset.range(1)
  # One part at a time, in order, the next one prepared (its shuffle buffer filled) while this
  # one is read: a flat_map would stall at every part's start to fill its buffer, and
  # Dataset.interleave prepares two parts ahead (three buffers in memory). The experimental
  # interleave is the one that takes how many to prepare; its deprecation notice is silenced.
  with deprecation.silence():
    ds = parts.apply(tf.data.experimental.parallel_interleave(
        part, cycle_length=1, sloppy=False, prefetch_input_elements=1))

  def number(state, x):
    seq, tails, last_tail = state
    tails += tf.cast(x['damaged'], tf.int64)
    last_tail = tf.where(x['damaged'], x['tail'], last_tail)
    return (seq + 1, tails, last_tail), {**x, 'seq': seq, 'tails': tails, 'last_tail': last_tail}

  zero = tf.constant(0, tf.int64)
  return ds.scan((zero, zero, tf.constant('')), number)


@dataclasses.dataclass(frozen=True)
class Contents:
  """What one pass over some files reads: `elements` of the evaluation stream (records and
  damaged markers), `records` read intact, and the unreadable `tails` ('FILE: unreadable from
  record N (byte B of S)'), in file order."""
  elements: int
  records: int
  tails: tuple


def read_contents(files):
  """The `Contents` of `files`: reads every byte once, parses nothing."""

  def add(state, x):
    records, tails = state
    return (records + tf.cast(tf.logical_not(x['damaged']), tf.int64),
            tf.where(x['damaged'], tf.strings.join([tails, x['tail'], '\n']), tails))

  records, tails = record_stream(files, train=False).reduce(
      (tf.constant(0, tf.int64), tf.constant('')), add)
  tails = tuple(tails.numpy().decode().splitlines())
  return Contents(elements=int(records) + len(tails), records=int(records), tails=tails)
