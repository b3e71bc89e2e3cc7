"""Mixtures with modality masks, exact resume of a mixture across epochs, bad records."""

import json
import os

import jax
import numpy as np
import pytest
import tensorflow as tf

from mmv import losses
from mmv.data import format as fmt
from mmv.data import mixture
from mmv.data import stream
from tests import dmvr


def _synthetic(data_dir, split, count):
  path = os.path.join(data_dir, f'{split}-00000-of-00002')
  return [tf.train.SequenceExample.FromString(r) for r in
          tf.data.TFRecordDataset(path).take(count).as_numpy_iterator()]


def _audioset_like(data_dir, out_dir, *, garbage_at=None):
  """12 synthetic test clips without captions, every other one without a waveform too (in
  2 shards), and optionally an unreadable record."""
  records = []
  for i, example in enumerate(_synthetic(data_dir, 'test', 12)):
    del example.context.feature[fmt.CAPTION]
    if i % 2:
      del example.feature_lists.feature_list[fmt.WAVEFORM]
    records.append(example.SerializeToString())
  if garbage_at is not None:
    records.insert(garbage_at, b'not a SequenceExample')
  dmvr.write_shards(out_dir, 'train', records, 2)
  return out_dir


def test_batch_shares_follow_the_weights():
  assert mixture.batch_counts([3, 1], 8) == [6, 2]
  assert mixture.batch_counts([1, 1, 1], 8) == [3, 3, 2]
  assert mixture.batch_counts([0.9, 0.1], 8) == [7, 1]
  with pytest.raises(ValueError, match='no room'):
    mixture.batch_counts([100, 1], 8)


@pytest.mark.slow
def test_mixture_batches_carry_modality_masks_the_losses_honour(config, tmp_path):
  other = _audioset_like(config.data.data_dir, str(tmp_path / 'audioset'))
  config.data.mixture = ((config.data.data_dir, 'train', 3.0), (other, 'train', 1.0))
  s = stream.train_stream(config.data, batch_size=16, seed=0)
  batch = next(s)
  # 12 clips with text and audio, then 4 without text, half of them without audio.
  np.testing.assert_array_equal(batch['text_mask'].max(1), [1] * 12 + [0] * 4)
  assert batch['audio_mask'][:12].all() and 0 < batch['audio_mask'][12:].sum() < 4
  assert list(s.state()['positions'].values()) == [[0, 12], [0, 4]]
  # Captions of clips without text neither count as positives nor as negatives; a clip
  # without audio has no NCE positive and its audio is no negative, but its video still is.
  rng = np.random.default_rng(0)
  video, audio = rng.normal(size=(2, 16, 8))
  text = rng.normal(size=(16, 2, 8))
  mil_nce = lambda t: losses.mil_nce(video, t, mask=batch['mask'], y_mask=batch['text_mask'])
  changed = text.copy()
  changed[12:] = rng.normal(size=(4, 2, 8))
  np.testing.assert_allclose(mil_nce(changed), mil_nce(text), rtol=1e-6)
  changed[0] = rng.normal(size=(2, 8))
  assert abs(float(mil_nce(changed) - mil_nce(text))) > 1e-3
  nce = lambda v, a: losses.mmv_loss(
      {'video_va': v, 'audio_va': a, 'video_vt': video, 'text_vt': text}, batch,
      temperature=0.07, weight_va=1.0, weight_vt=1.0)[1]['loss_va']
  no_audio = batch['audio_mask'] == 0
  changed = np.where(no_audio[:, None], rng.normal(size=(16, 8)), audio)
  np.testing.assert_allclose(nce(video, changed), nce(video, audio), rtol=1e-6)
  changed = np.where(no_audio[:, None], rng.normal(size=(16, 8)), video)
  assert abs(float(nce(changed, audio) - nce(video, audio))) > 1e-3


@pytest.mark.slow
def test_mixture_resumes_exactly_across_epochs_and_counts_skips(config, tmp_path):
  other = _audioset_like(config.data.data_dir, str(tmp_path / 'audioset'), garbage_at=5)
  config.data.mixture = ((config.data.data_dir, 'train', 3.0), (other, 'train', 1.0))
  full = stream.train_stream(config.data, batch_size=8, seed=1)
  batches = [next(full) for _ in range(8)]  # 16 of the second source's 13 elements.
  assert full.state_after(8)['positions'][f'{other}:train'][0] == 1
  assert full.state_after(8)['skipped'] >= 1  # The record that is not a SequenceExample.
  state = json.loads(json.dumps(stream.gather_state(full.state_after(3))))
  resumed = stream.train_stream(config.data, batch_size=8, seed=1, state=state)
  for expected in batches[3:]:
    got = next(resumed)
    for key in expected:
      np.testing.assert_array_equal(expected[key], got[key], err_msg=key)
  assert resumed.state_after(5) == full.state_after(8)


def _bad_dataset(config, out_dir, split='test'):
  """Shard 0: good, not a SequenceExample, undecodable JPEGs, no frames, good.
  Shard 1: two good records, then the file is cut in the middle of a third."""
  good = [e.SerializeToString() for e in _synthetic(config.data.data_dir, 'test', 5)]
  jpegs = dmvr.record(name='bad_jpeg', jpegs=[b'\xff\xd8not a jpeg'] * 20,
                      waveform=np.zeros(8000), captions=['a red circle'])
  no_frames = dmvr.record(name='no_frames', waveform=np.zeros(8000), captions=['a circle'])
  paths = dmvr.write_shards(out_dir, split, [], 2)
  with tf.io.TFRecordWriter(paths[0]) as w:
    for r in [good[0], b'not a SequenceExample', jpegs, no_frames, good[1]]:
      w.write(r)
  with tf.io.TFRecordWriter(paths[1]) as w:
    for r in good[2:5]:
      w.write(r)
  with open(paths[1], 'r+b') as f:
    f.truncate(os.path.getsize(paths[1]) - 100)
  dmvr.write_vocab(out_dir, open(os.path.join(config.data.data_dir, 'vocab.txt')).read().split())
  return paths


def _tail_of_bad_dataset(config, paths):
  """How `_bad_dataset`'s truncated shard is named: read intact up to its third record, whose
  offset is the two records before it, each framed by TFRecord's 16 bytes."""
  good = [e.SerializeToString() for e in _synthetic(config.data.data_dir, 'test', 5)]
  offset = sum(len(r) + 16 for r in good[2:4])
  return f'{paths[1]}: unreadable from record 2 (byte {offset} of {os.path.getsize(paths[1])})'


def test_bad_records_are_skipped_and_counted(config, tmp_path):
  train_tail = _tail_of_bad_dataset(config, _bad_dataset(config, str(tmp_path), 'train'))
  tail = _tail_of_bad_dataset(config, _bad_dataset(config, str(tmp_path)))
  config.data.data_dir = str(tmp_path)
  s = stream.eval_stream(config.data, 'test', batch_size=8)
  batches = list(s)
  assert len(batches) == 1 and batches[0]['mask'].sum() == 4  # Nothing else was readable.
  # Three records failed to decode; the truncated shard's tail, of unknown length, apart.
  assert (s.skipped, s.unreadable) == (3, 1)
  assert list(s.tails) == [tail]
  # Training goes on through them too, and meets them again each pass (4 examples a pass).
  train = stream.train_stream(config.data, batch_size=4, seed=0)
  for _ in range(3):
    assert next(train)['frames'].shape[0] == 4
  assert train.state()['skipped'] >= 3 * 2 and train.state()['unreadable'] >= 2
  assert list(train.tails) == [train_tail]


def test_strict_reading_names_the_file_and_record(config, tmp_path):
  paths = _bad_dataset(config, str(tmp_path))
  config.data.data_dir, config.data.strict = str(tmp_path), True
  with pytest.raises(stream.DataError,
                     match=f'{paths[0]} \\(record 1\\): Invalid protocol message'):
    list(stream.eval_stream(config.data, 'test', batch_size=8))
  os.remove(paths[0])
  dmvr.write_shards(str(tmp_path), 'test', [], 1)  # Only the truncated shard is left to read.
  os.rename(paths[1], os.path.join(str(tmp_path), 'test-00000-of-00001'))
  with pytest.raises(stream.DataError, match='test-00000-of-00001 \\(record 2\\).*ends early'):
    list(stream.eval_stream(config.data, 'test', batch_size=8))
