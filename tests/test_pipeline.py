"""The tf.data pipeline: shapes, dtypes, ranges, spectrograms, determinism, sharding, padding."""

import json
import os

import jax
import numpy as np
import pytest
import tensorflow as tf

from mmv import sharding
from mmv.data import audio as audio_ops
from mmv.data import pipeline
from mmv.data import synthetic


def _first(config, split='train', train=True, **kw):
  ds = pipeline.make_dataset(config.data, split, batch_size=8, train=train, **kw)
  return next(ds.as_numpy_iterator())


def test_batch_shapes_dtypes_and_ranges(config):
  batch = _first(config)
  shapes = pipeline.output_shapes(config.data)
  for key, shape in shapes.items():
    assert batch[key].shape == (8,) + shape, key
  assert batch['video'].dtype == np.float32
  assert 0.0 <= batch['video'].min() and batch['video'].max() <= 1.0
  assert batch['video'].std() > 0.05  # Real frames, not zeros.
  assert batch['audio'].dtype == np.float32 and np.isfinite(batch['audio']).all()
  assert batch['text'].dtype == np.int32
  vocab = len(open(os.path.join(config.data.data_dir, 'vocab.txt')).read().split()) + 2
  assert 0 <= batch['text'].min() and batch['text'].max() < vocab
  assert batch['text'][:, :, 0].min() >= 2  # Every caption has a known first word.
  assert set(np.unique(batch['label'])) <= set(range(16))
  np.testing.assert_array_equal(batch['mask'], 1.0)
  np.testing.assert_array_equal(batch['audio_mask'], 1.0)
  np.testing.assert_array_equal(batch['text_mask'], 1.0)


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


def test_eval_is_deterministic_and_train_depends_on_seed(config):
  a = _first(config, 'test', train=False)
  b = _first(config, 'test', train=False)
  np.testing.assert_array_equal(a['video'], b['video'])
  c = _first(config, seed=0)
  d = _first(config, seed=0)
  e = _first(config, seed=1)
  np.testing.assert_array_equal(c['video'], d['video'])
  assert not np.array_equal(c['video'], e['video'])


def test_start_example_resumes_the_stream_exactly(config):
  ds = pipeline.make_dataset(config.data, 'train', batch_size=8, train=True, seed=3)
  batches = [b for _, b in zip(range(12), ds.as_numpy_iterator())]  # Over one epoch (64).
  resumed = pipeline.make_dataset(config.data, 'train', batch_size=8, train=True, seed=3,
                                  start_example=5 * 8)
  for expected, got in zip(batches[5:], resumed.as_numpy_iterator()):
    for key in expected:
      np.testing.assert_array_equal(expected[key], got[key], err_msg=key)


def test_processes_read_disjoint_files(config):
  files = pipeline.split_files(config.data.data_dir, 'train')
  shares = [pipeline.process_files(files, i, 2) for i in range(2)]
  assert sorted(shares[0] + shares[1]) == files and not set(shares[0]) & set(shares[1])
  with pytest.raises(ValueError, match='cannot be shared'):
    pipeline.process_files(files, 0, len(files) + 1)
  names = [_first(config, 'test', train=False, process_index=i, process_count=2)
           for i in range(2)]
  assert not np.array_equal(names[0]['video'], names[1]['video'])


def test_missing_split_is_a_clear_error(config):
  with pytest.raises(FileNotFoundError, match='no shards validation'):
    pipeline.make_dataset(config.data, 'validation', batch_size=8, train=False)


def test_eval_reads_every_example_once_and_pads(config):
  ds = pipeline.make_dataset(config.data, 'test', batch_size=12, train=False)
  batches = [pipeline.pad_batch(b, 12) for b in ds.as_numpy_iterator()]
  assert all(b['video'].shape[0] == 12 for b in batches)
  masks = np.concatenate([b['mask'] for b in batches])
  assert masks.sum() == 32 and len(masks) == 36
  assert (masks[32:] == 0).all()


def test_global_batches_are_sharded_over_all_devices(config):
  mesh = sharding.make_mesh()
  ds = pipeline.make_dataset(config.data, 'train', batch_size=16, train=True)
  batch = next(pipeline.global_batches(ds.as_numpy_iterator(), sharding.batch_sharding(mesh)))
  assert batch['video'].shape[0] == 16
  assert len(batch['video'].addressable_shards) == jax.device_count() == 8
  assert batch['video'].addressable_shards[0].data.shape[0] == 2
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
