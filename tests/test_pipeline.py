"""The pipeline on the synthetic dataset: the model's batch, determinism, exact resume, several
processes, evaluation padding, the device hand-over."""

import json
import os

import jax
import numpy as np
import pytest
import tensorflow as tf

from mmv import sharding
from mmv.data import audio as audio_ops
from mmv.data import pipeline
from mmv.data import records
from mmv.data import stream
from mmv.data import synthetic


def _train(config, n, seed=0, state=None, batch_size=8):
  s = stream.train_stream(config.data, batch_size=batch_size, seed=seed, state=state)
  return s, [next(s) for _ in range(n)]


def test_model_batch_shapes_dtypes_and_ranges(config):
  mesh = sharding.make_mesh()
  s = stream.train_stream(config.data, batch_size=16, seed=0)
  batch = next(pipeline.global_batches(s, sharding.batch_sharding(mesh), config.data))
  shapes = pipeline.output_shapes(config.data)
  assert set(batch) == set(shapes)
  for key, shape in shapes.items():
    assert batch[key].shape == (16,) + shape, key
  assert len(batch['video'].addressable_shards) == jax.device_count() == 8
  batch = jax.device_get(batch)
  assert batch['video'].dtype == np.float32
  assert 0.0 <= batch['video'].min() and batch['video'].max() <= 1.0
  assert batch['video'].std() > 0.05  # Real frames, not zeros.
  assert batch['audio'].dtype == np.float32 and np.isfinite(batch['audio']).all()
  assert batch['text'].dtype == np.int32
  vocab = len(open(os.path.join(config.data.data_dir, 'vocab.txt')).read().split()) + 2
  assert 0 <= batch['text'].min() and batch['text'].max() < vocab
  assert batch['text'][:, :, 0].min() >= 2  # Every caption has a known first word.
  assert set(np.unique(batch['label'])) <= set(range(16))
  for key in ('mask', 'audio_mask', 'text_mask'):
    np.testing.assert_array_equal(batch[key], 1.0)


def test_spectrogram_of_a_known_tone():
  rate, seconds, freq = 4000.0, 1.0, 1000.0
  t = np.arange(int(rate * seconds)) / rate
  wave = tf.constant(np.sin(2 * np.pi * freq * t), tf.float32)
  kw = dict(sample_rate=rate, window=256, hop=128, num_mel_bins=32, lower_hz=80.0,
            upper_hz=1900.0)
  spec = audio_ops.log_mel_spectrogram(wave, log_offset='mmv', **kw).numpy()
  assert spec.shape == (audio_ops.num_spectrogram_frames(4000, 256, 128), 32, 1)
  assert spec.shape[0] == 30
  # The energy sits in the mel bin whose centre is nearest 1 kHz.
  mel_edges = tf.signal.linear_to_mel_weight_matrix(32, 129, rate, 80.0, 1900.0).numpy()
  expected_bin = np.argmax(mel_edges[int(round(freq / (rate / 256)))])
  assert np.argmax(spec[..., 0].mean(0)) == expected_bin
  dmvr = audio_ops.log_mel_spectrogram(wave, log_offset='dmvr', **kw).numpy()
  assert dmvr.min() < 0 < spec.min() + 1e-6  # log(mel + 1e-6) goes negative; log1p does not.
  with pytest.raises(ValueError, match='log_offset'):
    audio_ops.log_mel_spectrogram(wave, log_offset='nope', **kw)


@pytest.mark.slow
def test_training_stream_is_determined_by_the_seed_and_resumes_exactly(config):
  # 64 clips in 4 shards, batches of 8: 12 batches cross an epoch boundary.
  full, batches = _train(config, 12, seed=3)
  _, again = _train(config, 2, seed=3)
  _, other = _train(config, 1, seed=4)
  np.testing.assert_array_equal(batches[0]['frames'], again[0]['frames'])
  assert not np.array_equal(batches[0]['frames'], other[0]['frames'])
  assert full.state_after(12)['positions']['train'][0] == 1  # In the second epoch.
  # The state a checkpoint keeps, through JSON, resumes the stream where it stood.
  state = json.loads(json.dumps(stream.gather_state(full.state_after(5))))
  assert state == {'sources': ['train'], 'positions': [[[0, 40]]], 'skipped': [0],
                   'unreadable': [0]}
  resumed, rest = _train(config, 7, seed=3, state=state)
  for expected, got in zip(batches[5:], rest):
    assert set(expected) == set(got)
    for key in expected:
      np.testing.assert_array_equal(expected[key], got[key], err_msg=key)
  assert resumed.state_after(7) == full.state_after(12)
  # A checkpoint written before unreadable shard tails were counted apart resumes as well.
  del state['unreadable']
  _, old = _train(config, 1, seed=3, state=state)
  np.testing.assert_array_equal(old[0]['frames'], batches[5]['frames'])
  with pytest.raises(ValueError, match='written by 1 processes'):
    stream.train_stream(config.data, batch_size=8, seed=3, state=state, process_count=2)


def test_processes_read_disjoint_files_and_yield_equal_batch_counts(config):
  files = records.split_files(config.data.data_dir, 'train')
  shares = [records.process_files(files, i, 2) for i in range(2)]
  assert sorted(shares[0] + shares[1]) == files and not set(shares[0]) & set(shares[1])
  with pytest.raises(ValueError, match='cannot be shared'):
    records.process_files(files, 0, len(files) + 1)
  config.data.with_names = True
  seen = []
  for i in range(2):
    batches = list(stream.eval_stream(config.data, 'test', batch_size=12, process_index=i,
                                      process_count=2))
    assert len(batches) == 2  # 16 clips per process: batches of 12 and 4 + 8 padding rows.
    names = np.concatenate([b['filename'][b['mask'] > 0] for b in batches])
    seen.append(set(names))
    assert len(names) == len(seen[-1]) == 16
  assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 32


def test_missing_split_is_a_clear_error(config):
  with pytest.raises(FileNotFoundError, match='no shards validation'):
    stream.eval_stream(config.data, 'validation', batch_size=8)


def test_a_split_of_two_shard_sets_or_a_set_missing_a_shard_is_refused(config, tmp_path):
  """What a conversion cut short while replacing 2 shards by 3 could leave, if it left
  anything: readers would take 5 files, records of both sets (or of part of one)."""
  shard = os.path.join(config.data.data_dir, 'test-00000-of-00002')
  for name in os.listdir(config.data.data_dir):
    os.symlink(os.path.join(config.data.data_dir, name), tmp_path / name)
  for i in range(3):
    os.symlink(shard, tmp_path / f'test-{i:05d}-of-00003')
  config.data.data_dir = str(tmp_path)
  with pytest.raises(ValueError) as refused:
    list(stream.eval_stream(config.data, 'test', batch_size=8))
  message = str(refused.value)
  assert 'test-*-of-00002 (2 files) and test-*-of-00003 (3 files)' in message
  assert '\n' not in message
  for name in ('test-00000-of-00002', 'test-00001-of-00002', 'test-00002-of-00003'):
    os.remove(tmp_path / name)
  with pytest.raises(ValueError, match=r'holds 2 files of the 3 shards test-\*-of-00003 '
                     r'\(missing test-00002-of-00003\)'):
    records.split_files(str(tmp_path), 'test')
  # Another split whose name begins with this one's is not a set of it.
  os.symlink(shard, tmp_path / 'test-extra-00000-of-00001')
  os.symlink(shard, tmp_path / 'test-00002-of-00003')
  assert records.split_files(str(tmp_path), 'test') == [
      str(tmp_path / f'test-{i:05d}-of-00003') for i in range(3)]
  # Files named like shards but not quite (an extension): named, not called missing.
  named = tmp_path / 'named'
  named.mkdir()
  os.symlink(shard, named / 'test-00000-of-00001.tfrecord')
  with pytest.raises(ValueError, match=r'holds test-00000-of-00001.tfrecord \(1 such files\) '
                     r'but no shard named test-NNNNN-of-NNNNN'):
    records.split_files(str(named), 'test')


def test_eval_reads_every_example_once_and_pads(config):
  batches = list(stream.eval_stream(config.data, 'test', batch_size=12))
  assert [b['frames'].shape[0] for b in batches] == [12, 12, 12]
  masks = np.concatenate([b['mask'] for b in batches])
  np.testing.assert_array_equal(masks, [1] * 32 + [0] * 4)
  mesh = sharding.make_mesh()
  with pytest.raises(ValueError, match='not divisible by the 8 devices'):
    sharding.check_batch_size(12, mesh)


def test_synthetic_dataset_is_deterministic_and_tied_to_its_factors(tmp_path, data_dir):
  info = synthetic.generate(str(tmp_path), seed=0, splits={'train': 64, 'test': 32},
                            num_shards={'train': 4, 'test': 2})
  for name in ('train-00000-of-00004', 'test-00001-of-00002', 'vocab.txt'):
    with open(tmp_path / name, 'rb') as a, open(os.path.join(data_dir, name), 'rb') as b:
      assert a.read() == b.read(), name
  assert info == json.load(open(os.path.join(data_dir, 'info.json')))
  record = next(iter(tf.data.TFRecordDataset(str(tmp_path / 'test-00000-of-00002'))))
  example = tf.train.SequenceExample.FromString(record.numpy())
  label = example.context.feature['clip/label/text'].bytes_list.value[0].decode()
  caption = example.context.feature['caption/string'].bytes_list.value[0].decode()
  shape, direction = label.split('_')
  assert shape in caption and direction in caption
  assert any(colour in caption for colour in synthetic.COLOURS)
  assert len(example.feature_lists.feature_list['image/encoded'].feature) == info['num_frames']
