"""Resuming costs one part of an epoch, not the epoch: exact from any position when an epoch is
read in several parts, a bounded number of records read to get there, old checkpoints."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from mmv.data import records
from mmv.data import stream
from tests import dmvr

# 20 shards of 2 to 5 records: an epoch in parts of 7, 7 and 6 shards.
_SHARDS = 20


@pytest.fixture(scope='module')
def shard_files(tmp_path_factory):
  out = tmp_path_factory.mktemp('parts')
  paths = []
  for k in range(_SHARDS):
    paths.append(str(out / f'train-{k:05d}-of-{_SHARDS:05d}'))
    with tf.io.TFRecordWriter(paths[-1]) as w:
      for j in range(2 + k % 4):
        w.write(f'{k}:{j}'.encode())
  return paths


def _elements(ds, n):
  return [(x['record'].decode(), int(x['part']), int(x['index']))
          for x in ds.take(n).as_numpy_iterator()]


def test_resume_from_any_position_equals_the_uninterrupted_stream(shard_files):
  kw = dict(train=True, seed=7, shuffle_buffer=6)
  per_epoch = sum(2 + k % 4 for k in range(_SHARDS))
  full = _elements(records.record_stream(shard_files, **kw), 2 * per_epoch + 10)
  # Every epoch reads every record once, shuffled across its part's files.
  for e in range(2):
    epoch = [r for r, _, _ in full[e * per_epoch:(e + 1) * per_epoch]]
    assert sorted(epoch) == sorted(f'{k}:{j}' for k in range(_SHARDS) for j in range(2 + k % 4))
  assert [r for r, _, _ in full[:per_epoch]] != [r for r, _, _ in full[per_epoch:2 * per_epoch]]
  assert [p for _, p, _ in full[:2 * per_epoch]] == sorted(p for _, p, _ in full[:2 * per_epoch])
  # Three parts of 20 / 3 shards, rounded: 7, 7 and 6 (not 8, 8 and 4).
  assert [len({r.split(':')[0] for r, p, _ in full[:per_epoch] if p == part})
          for part in range(3)] == [7, 7, 6]
  # From the start of a part, inside one, and after a part's last record (as a stream's state
  # names it): the same elements as the uninterrupted stream's from there on.
  ends = [i for i in range(1, len(full)) if full[i][1] != full[i - 1][1]]
  for i in [0, 3, ends[0], ends[1] + 5, ends[3] - 1, ends[3] + 2]:
    got = _elements(records.record_stream(shard_files, start=full[i][1:], **kw), 8)
    assert got == full[i:i + 8], i
  last = ends[2] - 1
  after_last = (full[last][1], full[last][2] + 1)
  got = _elements(records.record_stream(shard_files, start=after_last, **kw), 4)
  assert got == full[last + 1:last + 5]


@pytest.fixture(scope='module')
def many_shards(data_dir, tmp_path_factory):
  """64 shards of 2 synthetic training clips: 8 parts of 16 records per epoch."""
  out = str(tmp_path_factory.mktemp('many_shards'))
  clips = list(tf.data.TFRecordDataset(records.split_files(data_dir, 'train'))
               .as_numpy_iterator())
  dmvr.write_shards(out, 'train', clips * 2, 64)
  dmvr.write_vocab(out, open(os.path.join(data_dir, 'vocab.txt')).read().split())
  return out


def test_a_late_resume_reads_one_part_not_the_epoch(config, many_shards, monkeypatch):
  config.data.data_dir = many_shards
  config.data.shuffle_buffer = 4
  full = stream.train_stream(config.data, batch_size=4, seed=5)
  batches = [next(full) for _ in range(31)]
  state = json.loads(json.dumps(stream.gather_state(full.state_after(29))))  # 116 of 128.
  read = []
  original = records._file_records  # pylint: disable=protected-access

  def counted(path, size):
    return original(path, size).map(
        lambda x: {**x, 'record': tf.py_function(lambda r: read.append(1) or r, [x['record']],
                                                 tf.string)})

  monkeypatch.setattr(records, '_file_records', counted)
  monkeypatch.setattr(stream, '_require_an_example', lambda *args, **kwargs: None)
  resumed = stream.train_stream(config.data, batch_size=4, seed=5, state=state)
  first = next(resumed)
  # At most the position's part and the parts tf.data prepares ahead while the batches run
  # ahead: 4 parts of 16 records, not the 116 records before.
  assert len(read) <= 64, len(read)
  for expected, got in zip(batches[29:], [first, next(resumed)]):
    for key in expected:
      np.testing.assert_array_equal(expected[key], got[key], err_msg=key)
  assert resumed.state_after(2) == full.state_after(31)


def test_the_last_part_of_an_epoch_mixes_as_many_shards_as_the_others(tmp_path):
  """9 shards of 40 records, batches of 36: parts of 8 and 1 shards made the epoch's last
  batch of one shard; parts of 5 and 4 put at least 4 = 9 // ceil(9 / 8) shards in every
  batch (shards of one length end together: a part's last records mix all its shards)."""
  shards, per_shard, batch = 9, 40, 36
  paths = []
  for k in range(shards):
    paths.append(str(tmp_path / f'train-{k:05d}-of-{shards:05d}'))
    with tf.io.TFRecordWriter(paths[-1]) as w:
      for j in range(per_shard):
        w.write(f'{k}:{j}'.encode())
  epochs = 3
  elements = _elements(records.record_stream(paths, train=True, seed=3, shuffle_buffer=8),
                       epochs * shards * per_shard)
  mixed = [len({r.split(':')[0] for r, _, _ in elements[i:i + batch]})
           for i in range(0, len(elements), batch)]
  assert min(mixed) >= shards // -(-shards // records.CYCLE) == 4, mixed


def test_positions_of_an_older_version_carry_over_or_restart_the_epoch(config, many_shards):
  old = {'sources': ['train'], 'positions': [[[3, 40]]], 'skipped': [1], 'unreadable': [0]}
  # 4 shards: one part per epoch, read as before, so the position holds.
  assert stream.upgrade_state(config.data, old, None) == (old, None)
  assert stream.upgrade_state(config.data, old, stream.ORDER) == (old, None)
  # 64 shards: 8 parts per epoch; epoch 3 begins with part 24.
  config.data.data_dir = many_shards
  state, note = stream.upgrade_state(config.data, old, None)
  assert state == {**old, 'positions': [[[24, 0]]]}
  assert 'train (epoch 3) restart at the beginning of the saved epoch' in note
  assert stream.upgrade_state(config.data, old, stream.ORDER) == (old, None)
  # Two processes of 32 shards each: 4 parts per epoch.
  two = {**old, 'positions': [[[3, 40]], [[2, 7]]], 'skipped': [1, 0], 'unreadable': [0, 0]}
  assert stream.upgrade_state(config.data, two, None)[0]['positions'] == [[[12, 0]], [[8, 0]]]


def test_positions_in_parts_of_eight_carry_over_or_restart_the_part(config, many_shards,
                                                                   tmp_path):
  """Checkpoints of order 'parts' cut an epoch into parts of 8 shards and a last of the rest."""
  old = {'sources': ['train'], 'positions': [[[4, 30]]], 'skipped': [0], 'unreadable': [0]}
  # 64 shards: parts of 8 both ways, so the position holds.
  config.data.data_dir = many_shards
  assert stream.upgrade_state(config.data, old, 'parts') == (old, None)
  # 20 shards: parts of 8, 8 and 4 were, 7, 7 and 6 are: part 4 (the second of epoch 1) now
  # starts a shard earlier in the epoch's order, so from its beginning nothing is missed.
  dmvr.write_shards(str(tmp_path), 'train', [], 20)
  config.data.data_dir = str(tmp_path)
  state, note = stream.upgrade_state(config.data, old, 'parts')
  assert state == {**old, 'positions': [[[4, 0]]]}
  assert 'train (part 4) restart at the beginning of the saved epoch or part' in note
