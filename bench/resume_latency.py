r"""Seconds from the start of a resumed training stream to its first batch, by epoch position.

    python bench/resume_latency.py [--data_dir /tmp/mmv_resume] [--rounds 3]

The dataset: `--shards` shards of `--records` synthetic clips each (`mmv.data.synthetic`),
every record carrying `--padding_kb` of random bytes besides its frames (an unparsed context
feature), so that reading an epoch's bytes takes seconds, as video records do at scale.

For each position (a fraction of the first epoch: 0 %, 50 %, 99 % by default), the position is
found by reading the record stream (not timed), then a training stream (`configs/tiny.py`, one
process) is started from a checkpoint's data state at that position and timed up to its first
batch: the checks of the data, the tracing, getting to the position, one batch decoded. Only
getting to the position depends on it. Rounds alternate the positions; medians are printed.
With `--cold` (the default) the shards are dropped from the page cache before each start
(`posix_fadvise(DONTNEED)`), so their bytes come from the disk, as after a preemption on a new
machine; without it they are read from memory, the best case for reading. Each start also
reports the bytes the process read meanwhile (`rchar` of /proc/self/io), which the load of a
shared machine does not move.

The script imports the `mmv` next to it: to measure another version, run a copy of it from a
checkout of that version (e.g. `git archive COMMIT | tar -x -C /tmp/old`, then
`cp bench/resume_latency.py /tmp/old/bench/`).
"""

import json
import os
import statistics
import sys
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import tiny  # pylint: disable=g-import-not-at-top,wrong-import-position
from mmv.data import format as fmt  # pylint: disable=wrong-import-position
from mmv.data import records  # pylint: disable=wrong-import-position
from mmv.data import stream  # pylint: disable=wrong-import-position
from mmv.data import synthetic  # pylint: disable=wrong-import-position

_DATA_DIR = flags.DEFINE_string('data_dir', '/tmp/mmv_resume', 'Reuse or keep the dataset here.')
_SHARDS = flags.DEFINE_integer('shards', 64, 'Training shards.')
_RECORDS = flags.DEFINE_integer('records', 24, 'Records per shard.')
_PADDING_KB = flags.DEFINE_integer('padding_kb', 4096, 'Random bytes per record, in KiB.')
_POSITIONS = flags.DEFINE_list('positions', ['0', '0.5', '0.99'], 'Fractions of the epoch.')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Rounds over the positions.')
_SHUFFLE = flags.DEFINE_integer('shuffle_buffer', 64, 'data.shuffle_buffer (records).')
_COLD = flags.DEFINE_bool('cold', True, 'Drop the shards from the page cache before each start.')


def bytes_read():
  """Bytes this process has read through system calls (cached or not), from /proc/self/io."""
  with open('/proc/self/io') as f:
    return int(next(line for line in f if line.startswith('rchar:')).split()[1])


def drop_from_page_cache(files):
  for path in files:
    fd = os.open(path, os.O_RDONLY)
    try:
      os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
      os.close(fd)


def make_dataset(path, shards, per_shard, padding_kb):
  """The shards, vocab.txt and info.json (written last: a complete dataset) in `path`."""
  info_path = os.path.join(path, 'info.json')
  info = dict(shards=shards, records=per_shard, padding_kb=padding_kb)
  if os.path.exists(info_path) and json.load(open(info_path)) == info:
    return
  os.makedirs(path, exist_ok=True)
  rng = np.random.default_rng(0)
  clips = [synthetic.make_example(rng, i, 20, 40, 10.0, 4000.0) for i in range(16)]
  for k in range(shards):
    with tf.io.TFRecordWriter(os.path.join(path, fmt.shard_name('train', k, shards))) as w:
      for j in range(per_shard):
        example = tf.train.SequenceExample()
        example.CopyFrom(clips[(k * per_shard + j) % len(clips)])
        example.context.feature['bench/padding'].bytes_list.value.append(
            rng.bytes(padding_kb * 1024))
        w.write(example.SerializeToString())
  with open(os.path.join(path, 'vocab.txt'), 'w') as f:
    f.write('\n'.join(synthetic.vocabulary()) + '\n')
  with open(info_path, 'w') as f:
    json.dump(info, f)


def config(data_dir):
  c = tiny.get_config().data
  c.data_dir = data_dir
  c.shuffle_buffer = _SHUFFLE.value
  return c


def positions(c, fractions, seed):
  """{fraction: the data state at that fraction of the first epoch}, from one pass of the record
  stream of process 0 (as `stream.train_stream` reads it)."""
  files = records.split_files(c.data_dir, 'train')
  total = _SHARDS.value * _RECORDS.value
  wanted = {min(int(f * total), total - 1): f for f in fractions}
  source_seed = stream._source_seed(seed, 0, 0)  # pylint: disable=protected-access
  ds = records.record_stream(files, train=True, shuffle_buffer=c.shuffle_buffer, seed=source_seed)
  found = {}
  for i, x in enumerate(ds.take(max(wanted) + 1).as_numpy_iterator()):
    if i in wanted:
      # The version before parts called the position's first number the epoch.
      first = x['part'] if 'part' in x else x['epoch']
      found[wanted[i]] = {'sources': ['train'], 'positions': [[[int(first), int(x['index'])]]],
                          'skipped': [0], 'unreadable': [0]}
  return found


def main(argv):
  del argv
  tf.config.set_visible_devices([], 'GPU')
  make_dataset(_DATA_DIR.value, _SHARDS.value, _RECORDS.value, _PADDING_KB.value)
  c = config(_DATA_DIR.value)
  fractions = [float(f) for f in _POSITIONS.value]
  states = positions(c, fractions, seed=0)
  epoch_mb = _SHARDS.value * _RECORDS.value * _PADDING_KB.value / 1024
  print(f'{_SHARDS.value} shards x {_RECORDS.value} records, {epoch_mb:.0f} MiB per epoch, '
        f'shuffle buffer {c.shuffle_buffer}, {"cold" if _COLD.value else "warm"} page cache')
  files = records.split_files(c.data_dir, 'train')
  times = {f: [] for f in fractions}
  read = {f: [] for f in fractions}
  for _ in range(_ROUNDS.value):
    for f in fractions:
      if _COLD.value:
        drop_from_page_cache(files)
      start, before = time.perf_counter(), bytes_read()
      s = stream.train_stream(c, batch_size=8, seed=0, state=states[f])
      next(s)
      times[f].append(time.perf_counter() - start)
      read[f].append((bytes_read() - before) / 2**20)
      print(f'  {f:.0%} {states[f]["positions"][0][0]}: {times[f][-1]:.2f} s, '
            f'{read[f][-1]:.0f} MiB read', flush=True)
      del s
  print('| position in the epoch | saved position | s to the first batch (median) | min–max '
        '| MiB read by then (median) |')
  print('|---:|---|---:|---|---:|')
  for f in fractions:
    t = times[f]
    print(f'| {f:.0%} | {states[f]["positions"][0][0]} | {statistics.median(t):.2f} | '
          f'{min(t):.2f}–{max(t):.2f} | {statistics.median(read[f]):.0f} |')


if __name__ == '__main__':
  app.run(main)
