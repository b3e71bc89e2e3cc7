"""Data that cannot be read: training input with no example is an error (not a hang), shard
tails that cannot be read are counted apart from failed records and named, and an evaluation
record states the true numbers of videos listed, read and skipped."""

import os
import shutil
import struct
import threading

import jax
import numpy as np
import pytest
import tensorflow as tf

from mmv import benchmarks
from mmv import evaluate
from mmv import inference
from mmv import sharding
from mmv import train
from mmv import train_step
from mmv.data import stream
from mmv.evaluators import report
from tests import dmvr


def _error_within(seconds, fn):
  """The exception `fn()` raises, failing the test if it is still running after `seconds`."""
  raised = []

  def target():
    try:
      fn()
    except Exception as e:  # pylint: disable=broad-except
      raised.append(e)

  thread = threading.Thread(target=target, daemon=True)
  thread.start()
  thread.join(seconds)
  assert not thread.is_alive(), f'still waiting for a batch after {seconds} s'
  return raised[0] if raised else None


def _copy_dataset(data_dir, out_dir):
  shutil.copytree(data_dir, out_dir)
  return str(out_dir)


def _garbage(path, size, seed=0):
  with open(path, 'wb') as f:
    f.write(np.random.default_rng(seed).bytes(size))


def _first_batch(config):
  batches, _ = train.input_batches(config, sharding.make_mesh(), None)
  next(batches)


@pytest.mark.parametrize('content', ['empty', 'garbage', 'not_examples'])
def test_training_input_without_an_example_is_an_error_not_a_hang(config, tmp_path, content):
  # 'not_examples': intact TFRecord files of 3 records each that are not SequenceExamples.
  junk = [b'not a SequenceExample'] * 6 if content == 'not_examples' else []
  paths = dmvr.write_shards(str(tmp_path), 'train', junk, 2)
  if content == 'garbage':
    for i, path in enumerate(paths):
      _garbage(path, 1000, seed=i)
  shutil.copy(os.path.join(config.data.data_dir, 'vocab.txt'), str(tmp_path))
  config.data.data_dir = str(tmp_path)
  error = _error_within(60, lambda: _first_batch(config))
  assert isinstance(error, stream.NoExampleError), error
  message = str(error)
  assert all(p in message for p in paths)
  assert f'{len(junk)} records read' in message
  if content == 'garbage':  # Nothing of either shard could be read: both tails are named.
    for p in paths:
      assert f'{p}: unreadable from record 0 (byte 0 of 1000)' in message


def test_a_garbage_shard_is_an_unreadable_tail_each_pass_not_a_skipped_record(config, tmp_path):
  data_dir = _copy_dataset(config.data.data_dir, tmp_path / 'data')
  # One of the 4 training shards (16 of 64 records) overwritten by as many random bytes.
  garbage = os.path.join(data_dir, 'train-00002-of-00004')
  size = os.path.getsize(garbage)
  _garbage(garbage, size)
  config.data.data_dir = data_dir
  s = stream.train_stream(config.data, batch_size=16, seed=0)
  for _ in range(7):  # 48 readable records a pass: 3 batches a pass, into the third pass.
    next(s)
  state = s.state()
  assert state['skipped'] == 0  # No record was read and failed to decode.
  # Met once per pass: twice, or thrice if the third pass met it before its first batch.
  assert state['unreadable'] in (2, 3)
  assert list(s.tails) == [f'{garbage}: unreadable from record 0 (byte 0 of {size})']
  assert stream.gather_state(state)['unreadable'] == [state['unreadable']]


def _record_ends(path):
  """Byte offsets where the records of an intact TFRecord file end, from its framing: length
  (8 bytes), its CRC (4), data, the data's CRC (4)."""
  ends, offset = [], 0
  with open(path, 'rb') as f:
    data = f.read()
  while offset < len(data):
    length, = struct.unpack('<Q', data[offset:offset + 8])
    offset += 16 + length
    ends.append(offset)
  return ends


@pytest.mark.slow
def test_evaluation_record_counts_videos_of_a_truncated_shard_and_warns(config, tmp_path,
                                                                        monkeypatch):
  data_dir = _copy_dataset(config.data.data_dir, tmp_path / 'data')
  test_files = sorted(os.path.join(data_dir, f) for f in os.listdir(data_dir)
                      if f.startswith('test-'))
  listed = sum(1 for f in test_files for _ in tf.data.TFRecordDataset(f))  # Intact.
  train_listed = sum(1 for f in os.listdir(data_dir) if f.startswith('train-')
                     for _ in tf.data.TFRecordDataset(os.path.join(data_dir, f)))
  ends = _record_ends(test_files[1])
  cut = (ends[5] + ends[6]) // 2  # In the middle of the seventh record.
  with open(test_files[1], 'r+b') as f:
    f.truncate(cut)
  read = listed - len(ends) + sum(1 for e in ends if e <= cut)
  assert (listed, read) == (32, 22)  # The fixture's: 2 shards of 16; 6 of the cut one's left.

  block = config.eval.synthetic  # One clip and one pass suffice to count.
  block.train_passes = block.test_clips = block.retrieval_clips = 1
  config.eval.batch_size = 32
  # The model as initialised: the counts do not depend on its weights.
  model = train_step.create_model(inference.model_config(config))
  mesh = sharding.make_mesh()
  variables = train_step.init_variables(jax.random.key(0), model, config)
  monkeypatch.setattr(inference, 'restore',
                      lambda config, workdir, step=None: ((model, variables, mesh), step))
  monkeypatch.setattr(evaluate, 'checkpoint_identity', lambda workdir, step: {})
  bench = benchmarks.get('synthetic')
  prepared = evaluate.prepare_splits(bench, config, data_dir)
  record = evaluate.evaluate_step(config, bench, prepared, str(tmp_path / 'run'), 1,
                                  cache_features=False, progress=False)
  protocol = record['protocol']
  roles = protocol['videos_read']['test']
  test_roles = {'linear_test', 'retrieval_test'}
  assert test_roles < set(roles)
  for role in roles:
    expected = (listed, read) if role in test_roles else (train_listed, train_listed)
    assert (protocol['videos_listed']['test'][role],
            protocol['videos_read']['test'][role]) == expected, role
    assert protocol['videos_skipped']['test'][role] == expected[0] - expected[1], role
  assert protocol['unreadable_shards'] == {
      'test': {'test': [f'{test_files[1]}: unreadable from record 6 (byte {ends[5]} of {cut})']}}
  first_line = report.render_markdown(record).splitlines()[0]
  assert 'WARNING' in first_line and f'linear_test: {listed - read} of {listed}' in first_line
