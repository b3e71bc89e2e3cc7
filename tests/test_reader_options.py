"""Reader options on records whose content tells time: frame k has red level 8k and a green
ramp left to right; the waveform is a ramp whose value is the time in seconds; captions carry
times. So a batch shows which frames, which crop, which audio window and which captions the
reader took."""

import functools

import jax
import numpy as np
import pytest
import tensorflow as tf

from configs import tiny
from mmv.data import audio as audio_ops
from mmv.data import augment
from mmv.data import pipeline
from mmv.data import stream
from mmv.data import text as text_ops
from mmv.data import video as video_ops
from tests import dmvr

H, W = 48, 64
VOCAB = ['first', 'second', 'third', 'fourth', 'fifth', 'cut', 'cat', 'sat', 'mat', 'dog']
TIMED = [(0.0, 0.4), (0.6, 1.0), (1.2, 1.6), (1.8, 2.2), (2.4, 2.8)]  # Middles 0.2, 0.8, ...


def _frames(n):
  green = np.round(np.arange(W) * 255 / (W - 1))
  frames = np.zeros((n, H, W, 3), np.uint8)
  frames[..., 0] = (8 * np.arange(n))[:, None, None]
  frames[..., 1] = green[None, None, :]
  frames[..., 2] = 128
  return frames


def _ramp(seconds, rate):
  return np.arange(int(seconds * rate)) / rate


@pytest.fixture(scope='module')
def opts_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('opts'))
  records = [
      dmvr.record(name='full', frames=_frames(30), waveform=_ramp(3, 1000),
                  captions=[f'{w} cut' for w in VOCAB[:5]], caption_times=TIMED,
                  labels=[1, 3], label_names=['b', 'd']),
      dmvr.record(name='short', frames=_frames(5)),
      dmvr.record(name='rate2k', frames=_frames(30), waveform=_ramp(3, 2000), sample_rate=2000.0,
                  captions=['The cat sat on the mat today', 'dog', 'bird'], labels=[2],
                  label_names=['c']),
  ]
  for split in ('train', 'test'):
    dmvr.write_shards(path, split, records, 1)
  dmvr.write_vocab(path, VOCAB)
  return path


def _config(opts_dir):
  c = tiny.get_config().data
  c.data_dir = opts_dir
  c.num_frames, c.frame_stride, c.fps, c.crop_size = 4, 2, 10.0, 32
  c.audio_sample_rate, c.audio_format = 1000.0, 'waveform'
  c.num_captions, c.max_words, c.stop_words = 2, 4, ('the', 'on')
  c.with_names, c.shuffle_buffer = True, 4
  return c


@pytest.fixture
def c(opts_dir):
  return _config(opts_dir)


@pytest.fixture(scope='module')
def evaluated(opts_dir):
  """(host batch, finished batch) of the test split read with `c` as it is: read once for the
  tests that read it so (each stream and finishing costs a tf.data graph and a compilation)."""
  c = _config(opts_dir)
  host, = list(stream.eval_stream(c, 'test', batch_size=3))
  return host, _finish(host, c)


def _finish(batch, c):
  """The device side on the host's batch: float video, names kept."""
  arrays = {k: v for k, v in batch.items() if v.dtype != object}
  out = jax.device_get(jax.jit(functools.partial(augment.finish_batch, c=c))(arrays))
  return {**out, **{k: v for k, v in batch.items() if v.dtype == object}}


def _eval(c):
  batch, = list(stream.eval_stream(c, 'test', batch_size=3))
  return _finish(batch, c)


def _rows(batch, name):
  return {k: v[batch['filename'] == name.encode()] for k, v in batch.items()}


def _red_frames(video):
  """The frame index each frame of [..., T, h, w, 3] shows."""
  return np.round(video[..., 0].mean(axis=(-1, -2)) * 255 / 8).astype(int)


def _ids(*words):
  return [VOCAB.index(w) + 2 if w in VOCAB else text_ops.UNK_ID for w in words]


def test_middle_clip_with_its_audio_captions_and_labels(evaluated):
  batch = evaluated[1]
  full, short, rate2k = (_rows(batch, n) for n in ('full', 'short', 'rate2k'))
  # 30 frames, span 7: the middle clip starts at frame 11, i.e. 1.1 s.
  np.testing.assert_array_equal(_red_frames(full['video']), [[11, 13, 15, 17]])
  np.testing.assert_allclose(full['audio'][0], 1.1 + np.arange(800) / 1000, atol=1e-6)
  # Clip centre 1.5 s: the captions with middles 1.4 and 2.0 s are the nearest two.
  np.testing.assert_array_equal(full['text'][0], [_ids('third', 'cut') + [0, 0],
                                                  _ids('fourth', 'cut') + [0, 0]])
  assert full['label'][0] == 1 and full['label_name'][0] == b'b'
  # A 5-frame video repeats; no waveform, captions or labels: masked, not skipped.
  np.testing.assert_array_equal(_red_frames(short['video']), [[0, 2, 4, 1]])
  assert short['audio_mask'][0] == 0 and not short['audio'].any()
  np.testing.assert_array_equal(short['text_mask'], [[0, 0]])
  assert short['label'][0] == -1 and short['label_name'][0] == b''
  # At 2 kHz the window is resampled to 1 kHz; captions without times: the first K in order,
  # stop words dropped, cut at max_words, unknown words <unk>.
  np.testing.assert_allclose(rate2k['audio'][0], 1.1 + np.arange(800) / 1000, atol=2e-3)
  np.testing.assert_array_equal(rate2k['text'][0], [_ids('cat', 'sat', 'mat', 'today'),
                                                    _ids('dog') + [0, 0, 0]])
  np.testing.assert_array_equal(batch['mask'], 1.0)


def test_evenly_spaced_test_clips_are_folded_into_the_batch(c):
  c.num_test_clips = 3
  batch = _eval(c)
  assert batch['video'].shape == (9, 4, 32, 32, 3)
  assert list(batch['filename']) == [b'full'] * 3 + [b'short'] * 3 + [b'rate2k'] * 3
  full = _rows(batch, 'full')
  starts = [0, 12, 23]  # Offsets 0 .. 23 evenly spaced.
  np.testing.assert_array_equal(_red_frames(full['video'])[:, 0], starts)
  np.testing.assert_allclose(full['audio'][:, 0], np.array(starts) / 10, atol=1e-6)
  # Each clip gets the captions nearest its own centre (0.4, 1.6 and 2.7 s).
  np.testing.assert_array_equal(full['text'][:, 0, 0], _ids('first', 'third', 'fifth'))


def test_training_draws_are_seeded_and_shared_by_the_modalities(c):
  c.random_flip, c.scale_jitter = True, (0.8, 1.2)
  s = stream.train_stream(c, batch_size=12, seed=0)
  host = next(s)
  np.testing.assert_array_equal(host['frames'], next(stream.train_stream(c, batch_size=12,
                                                                        seed=0))['frames'])
  batch = _finish(host, c)
  with_audio = batch['audio_mask'] > 0
  first_frame = _red_frames(batch['video'])[:, 0]
  # The audio window starts at the first sampled frame's time, clip by clip.
  np.testing.assert_allclose(batch['audio'][with_audio, 0], first_frame[with_audio] / 10,
                             atol=2e-3)
  assert len(set(first_frame[batch['filename'] == b'full'])) > 1  # Random offsets.
  green = batch['video'][..., 1].mean(axis=(1, 2))  # [rows, crop width]
  flipped = green[:, 0] > green[:, -1]
  assert flipped.any() and not flipped.all()
  # Scale jitter: the crop covers 26 to 38 frame pixels, so the green slope varies.
  slopes = (green[:, -1] - green[:, 0]) * np.where(flipped, -1, 1)
  assert slopes.max() - slopes.min() > 0.03


def test_crop_window_and_short_side_resize(c, evaluated):
  batch = _rows(evaluated[1], 'full')
  green = batch['video'][0, 0, :, :, 1].mean(0) * 255
  # The central 32x32 crop of the 48x64 frame: columns 16..47.
  np.testing.assert_allclose(green, (16 + np.arange(32)) * 255 / 63, atol=4)
  c.min_resize, c.crop_size = 24, 16
  batch = _rows(_eval(c), 'full')
  green = batch['video'][0, 0, :, :, 1].mean(0) * 255
  # Resized to 24x32 first: the central 16x16 crop covers frame columns 16..47 at half scale.
  np.testing.assert_allclose(green, (16.5 + 2 * np.arange(16)) * 255 / 63, atol=4)


def test_label_formats(c):
  c.label_format, c.num_classes = 'multi_hot', 4
  batch = _eval(c)
  np.testing.assert_array_equal(_rows(batch, 'full')['label'], [[0, 1, 0, 1]])
  np.testing.assert_array_equal(_rows(batch, 'short')['label'], [[0, 0, 0, 0]])
  c.label_format = 'one_hot'
  np.testing.assert_array_equal(_rows(_eval(c), 'full')['label'], [[0, 1, 0, 0]])
  c.num_classes = 0
  with pytest.raises(ValueError, match='num_classes'):
    stream.eval_stream(c, 'test', batch_size=3)


def test_audio_only_reading(c):
  c.modalities = ('audio',)
  batch = _eval(c)
  assert set(batch) == {'audio', 'audio_mask', 'label', 'mask', 'filename', 'label_name'}
  assert set(pipeline.output_shapes(c)) == {'audio', 'audio_mask', 'label', 'mask'}
  # The window is the middle 0.8 s of the waveform, at either stored rate.
  for name in ('full', 'rate2k'):
    np.testing.assert_allclose(_rows(batch, name)['audio'][0], 1.1 + np.arange(800) / 1000,
                               atol=2e-3)
  c.audio_format = 'log_mel'
  c.stft_window, c.stft_hop, c.num_mel_bins, c.mel_upper_hz = 128, 64, 16, 480.0
  batch = _eval(c)
  assert batch['audio'].shape == (3,) + pipeline.output_shapes(c)['audio'] == (3, 11, 16, 1)
  assert np.isfinite(batch['audio']).all()


def test_resampling_keeps_tones_and_removes_aliases():
  t = np.arange(4000) / 2000
  wave = lambda f: tf.constant(np.sin(2 * np.pi * f * t), tf.float32)
  kw = dict(rate_in=2000.0, rate_out=1000.0, num_samples=1000)
  amplitude = lambda x: 2 * np.abs(np.fft.rfft(x)) / len(x)  # 1 Hz bins.
  kept = amplitude(audio_ops.windows(wave(400), tf.constant([0.5]), **kw).numpy()[0])
  assert np.argmax(kept) == 400 and 0.93 < kept[400] < 1.01
  aliased = audio_ops.windows(wave(700), tf.constant([0.5]), **kw).numpy()[0]
  assert np.abs(aliased).max() < 0.01  # Above the new Nyquist rate (500 Hz): filtered out.


def test_device_resize_is_tf_image_resize_of_the_crop():
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (3, 2, 30, 40, 3)).astype(np.uint8)  # Crops in padded buffers.
  boxes = np.array([[0, 5, 20], [3, 0, 27], [0, 9, 30]], np.int32)  # Up-, down-, no scaling.
  got = jax.jit(augment.crop_resize, static_argnums=2)(frames, boxes, 24)
  for clip, (y, x, side), out in zip(frames, boxes, got):
    crop = clip[:, y:y + side, x:x + side].astype(np.float32)
    np.testing.assert_allclose(out, tf.image.resize(crop, [24, 24]).numpy(), atol=1e-3)


def test_colour_augmentation_matches_tf_image_and_draws_like_mmv():
  rng = np.random.default_rng(0)
  video = rng.uniform(0, 1, (6, 3, 8, 8, 3)).astype(np.float32)
  video[:, 0, :2] = rng.uniform(0, 1, (6, 2, 8, 1))  # Grey pixels (no hue, no saturation).
  video[:, 0, 2] = 0.0  # Black: brightness −0.12 makes them negative (tf's HSV: saturation 0).
  video[:, 1, :3] *= 0.05  # Dark pixels, some pushed below 0 by the brightness delta.
  video[:, 2, :3] = 0.97 + 0.03 * video[:, 2, :3]  # Bright ones, pushed beyond 1.
  colour = np.array([[0.1, 1.3, 0.7, 0.15], [-0.12, 0.6, 1.4, -0.2], [0.12, 1.4, 1.4, 0.2],
                     [-0.12, 1.4, 0.6, 0.19], [0.05, 0.6, 0.6, -0.01], [0.0, 1.0, 1.0, 0.0]],
                    np.float32)
  expected = []
  for clip, (b, s, k, h) in zip(video, colour):
    x = tf.image.adjust_saturation(tf.image.adjust_brightness(clip, b), s)
    x = tf.image.adjust_hue(tf.image.adjust_contrast(x, k), h)
    expected.append(tf.clip_by_value(x, 0, 1).numpy())
  jitter = jax.jit(augment.colour_jitter)
  np.testing.assert_allclose(jitter(video, colour), np.stack(expected), atol=1e-5)
  np.testing.assert_allclose(jitter(video, np.array([[0, 1, 1, 0]] * 6, np.float32)), video,
                             atol=1e-5)
  seeds = tf.stack([tf.range(300), tf.fill([300], 7)], axis=1)
  draws = tf.map_fn(video_ops.colour_draw, seeds, fn_output_signature=tf.float32).numpy()
  applied = ~np.all(draws == np.array(video_ops.IDENTITY_COLOUR), axis=1)
  assert 0.7 < applied.mean() < 0.9
  assert np.abs(draws[:, 0]).max() <= 32 / 255 and np.abs(draws[:, 3]).max() <= 0.2
  assert draws[:, 1:3].min() >= 0.6 and draws[:, 1:3].max() <= 1.4


def test_value_ranges(c, evaluated):
  host, unit = evaluated[0], evaluated[1]['video']
  assert 0 <= unit.min() and unit.max() <= 1
  c.normalization = 'centered'
  np.testing.assert_allclose(_finish(host, c)['video'], unit * 2 - 1, atol=1e-6)
  c.normalization = 'imagenet'
  np.testing.assert_allclose(_finish(host, c)['video'], (unit - augment.IMAGENET_MEAN) /
                             augment.IMAGENET_STD, atol=1e-5)
  c.normalization = 'zscore'
  with pytest.raises(ValueError, match='normalization'):
    stream.eval_stream(c, 'test', batch_size=3)
