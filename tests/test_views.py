"""Extra views of a training example (`data.views`) and record keys (`data.with_keys`,
`key_labels`), on records whose content tells time: frame k has red level 4k, the waveform is a
ramp whose value is the time in seconds. So a batch shows which frames and which audio window
each view took."""

import functools

import jax
import numpy as np
import pytest
import tensorflow as tf

from configs import tiny
from mmv.data import augment
from mmv.data import example as example_ops
from mmv.data import keys as key_ops
from mmv.data import pipeline
from mmv.data import stream
from mmv.data import views as view_ops
from tests import dmvr

H, W, FRAMES, FPS, RATE = 24, 40, 60, 10.0, 1000.0
NAMES = [f'clip{i}' for i in range(8)]
# Main clip: 8 frames, stride 2: a time span of 16 stored frames (1.6 s).
VIEWS = (('narrow', 4, 1, 16, 'within', True),    # 4 consecutive frames inside the main span.
         ('shifted', 4, 2, 24, 'independent', True),
         ('twin', 2, 1, 16, 'same', False))


def _frames(n):
  frames = np.zeros((n, H, W, 3), np.uint8)
  frames[..., 0] = (4 * np.arange(n))[:, None, None]
  frames[..., 1] = np.round(np.arange(W) * 255 / (W - 1))[None, None, :]  # Tells a flip.
  frames[..., 2] = 128
  return frames


def _records():
  return [dmvr.record(name=name, frames=_frames(FRAMES), fps=FPS, sample_rate=RATE,
                      waveform=np.arange(int(FRAMES / FPS * RATE)) / RATE + 10 * i)
          for i, name in enumerate(NAMES)]


@pytest.fixture(scope='module')
def views_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('views'))
  for split in ('train', 'test'):
    dmvr.write_shards(path, split, _records(), 2)
  return path


def _config(views_dir):
  c = tiny.get_config().data
  c.data_dir, c.modalities = views_dir, ('video', 'audio')
  c.num_frames, c.frame_stride, c.fps, c.crop_size = 8, 2, FPS, 16
  c.audio_sample_rate, c.audio_format = RATE, 'waveform'
  c.with_names, c.shuffle_buffer, c.scale_jitter = True, 8, (1.0, 1.0)
  c.views = VIEWS
  return c


@pytest.fixture
def c(views_dir):
  return _config(views_dir)


def _finish(batch, c):
  """The device side on the host's batch: float videos, names kept."""
  arrays = {k: v for k, v in batch.items() if v.dtype != object}
  out = jax.device_get(jax.jit(functools.partial(augment.finish_batch, c=c))(arrays))
  return {**out, **{k: v for k, v in batch.items() if v.dtype == object}}


def _frame_numbers(video):
  """The stored frame each frame of [..., T, h, w, 3] shows."""
  return np.round(video[..., 0].mean(axis=(-1, -2)) * 255 / 4).astype(int)


def _train_batches(c, n=2, seed=0, **kw):
  s = stream.train_stream(c, batch_size=8, seed=seed, **kw)
  return [next(s) for _ in range(n)]


@pytest.fixture(scope='module')
def batch(views_dir):
  """16 finished training rows with the three views."""
  c = _config(views_dir)
  hosts = _train_batches(c)
  return {k: np.concatenate([_finish(h, c)[k] for h in hosts]) for k in _finish(hosts[0], c)}


@pytest.mark.slow
def test_views_have_their_shapes_and_lie_where_placed(c, batch):
  shapes = pipeline.output_shapes(c)
  assert set(batch) - {'filename', 'label_name'} == set(shapes)
  assert shapes['video_narrow'] == (4, 16, 16, 3) and shapes['video_shifted'] == (4, 24, 24, 3)
  assert shapes['audio_narrow'] == (400,) and shapes['audio_shifted'] == (800,)
  assert 'audio_twin' not in shapes and shapes['video_twin'] == (2, 16, 16, 3)
  for key, shape in shapes.items():
    assert batch[key].shape == (16,) + shape, key
    assert batch[key].dtype == (np.int32 if key == 'label' else np.float32), key
  main = _frame_numbers(batch['video'])
  np.testing.assert_array_equal(main, main[:, :1] + 2 * np.arange(8))
  start = main[:, 0]
  narrow = _frame_numbers(batch['video_narrow'])
  np.testing.assert_array_equal(narrow, narrow[:, :1] + np.arange(4))
  # Inside the main clip's span [start, start + 16): starts start .. start + 12, drawn.
  within = narrow[:, 0] - start
  assert within.min() >= 0 and within.max() <= 12 and len(set(within)) > 3
  shifted = _frame_numbers(batch['video_shifted'])
  np.testing.assert_array_equal(shifted, shifted[:, :1] + 2 * np.arange(4))
  # Drawn over the whole video (offsets 0 .. 53), not tied to the main clip.
  assert shifted[:, 0].max() <= FRAMES - 7 and len(set(shifted[:, 0] - start)) > 8
  assert (np.abs(shifted[:, 0] - start) > 16).any()
  np.testing.assert_array_equal(_frame_numbers(batch['video_twin']),
                                start[:, None] + np.arange(2))


def test_view_audio_is_the_audio_of_its_frames(batch):
  record = np.array([NAMES.index(n.decode()) for n in batch['filename']])
  for key, video, samples in (('audio', 'video', 1600), ('audio_narrow', 'video_narrow', 400),
                              ('audio_shifted', 'video_shifted', 800)):
    start_s = _frame_numbers(batch[video])[:, 0] / FPS
    time = start_s[:, None] + np.arange(samples)[None] / RATE
    # The ramp's value is the time (+ 10 s per record); zeros past the waveform's end.
    expected = np.where(time < FRAMES / FPS - 1e-6, time + 10 * record[:, None], 0.0)
    np.testing.assert_allclose(batch[key], expected, atol=1e-4, err_msg=key)


def test_views_draw_their_own_crop_flip_and_colour(c):
  c.random_flip, c.color_augment, c.scale_jitter = True, True, (0.8, 1.2)
  host = _train_batches(c, n=1)[0]
  for view in ('narrow', 'shifted', 'twin'):
    for draw in ('box', 'flip', 'colour'):
      assert f'frames_{view}_{draw}' in host
  # Sides differ (crop sizes 16 and 24, each jittered), flips are drawn apart.
  assert not np.array_equal(host['frames_box'][:, 2], host['frames_shifted_box'][:, 2])
  assert not np.array_equal(host['frames_box'], host['frames_twin_box'])
  flips = np.stack([host[f'frames{v}_flip'] for v in ('', '_narrow', '_shifted', '_twin')])
  assert not (flips == flips[:1]).all()
  no_colour = {k: v for k, v in host.items() if not k.endswith('_colour')}
  green = _finish(no_colour, c)['video_twin'][..., 1].mean(axis=(1, 2))  # [rows, width]
  np.testing.assert_array_equal(green[:, 0] > green[:, -1], host['frames_twin_flip'] > 0)


@pytest.mark.slow
def test_views_are_determined_by_seed_and_position_and_leave_the_main_clip_alone(c):
  s = stream.train_stream(c, batch_size=8, seed=5)
  first = [next(s) for _ in range(3)]
  resumed = _train_batches(c, n=2, seed=5, state=stream.gather_state(s.state_after(1)))
  for expected, got in zip(first[1:], resumed):
    assert set(expected) == set(got)
    for key in expected:
      np.testing.assert_array_equal(expected[key], got[key], err_msg=key)
  other = _train_batches(c, n=1, seed=6)[0]
  assert not np.array_equal(first[0]['frames_shifted_box'], other['frames_shifted_box'])
  # Without views (or with others) the main clip's arrays are the same, bit for bit.
  c.views = ()
  plain = _train_batches(c, n=1, seed=5)[0]
  c.views = (VIEWS[1],)
  one = _train_batches(c, n=1, seed=5)[0]
  assert set(first[0]) - set(plain) == {
      f'{k}_{v}' for k in ('frames', 'audio') for v in ('narrow', 'shifted', 'twin')} - {
          'audio_twin'} | {f'frames_{v}_box' for v in ('narrow', 'shifted', 'twin')}
  for key in plain:
    np.testing.assert_array_equal(plain[key], first[0][key], err_msg=key)
  for key in one:  # A view's draws follow its name, not its place in the list.
    np.testing.assert_array_equal(one[key], first[0][key], err_msg=key)


def test_evaluation_reads_the_main_clip_only(c):
  batch, = list(stream.eval_stream(c, 'test', batch_size=8))
  augmented, = list(stream.eval_stream(c, 'test', batch_size=8, augment_seed=1))
  for b in (batch, augmented):
    assert not [k for k in b if 'narrow' in k or 'shifted' in k or 'twin' in k]
  assert 'video_narrow' not in pipeline.output_shapes(c, train=False)
  assert set(_finish(batch, c)) - {'filename', 'label_name'} == set(
      pipeline.output_shapes(c, train=False))


@pytest.mark.parametrize('entry, message', [
    (('narrow', 4, 1, 16, 'within'), r'each view is a tuple \(name, num_frames'),
    ('narrow', 'each view is a tuple'),
    (('Narrow', 4, 1, 16, 'within', False), 'name must be lower-case'),
    (('a_b', 4, 1, 16, 'within', False), 'name must be lower-case'),
    (('mask', 4, 1, 16, 'within', False), 'not one of'),
    (('narrow', 0, 1, 16, 'within', False), 'num_frames must be an integer of at least 1'),
    (('narrow', 4, True, 16, 'within', False), 'frame_stride must be an integer'),
    (('narrow', 4, 1, 16.0, 'within', False), 'crop_size must be an integer'),
    (('narrow', 4, 1, 16, 'whithin', False), "placement must be one of .* got 'whithin'"),
    (('narrow', 4, 1, 16, 'within', 1), 'with_audio must be True or False'),
    (('narrow', 9, 2, 16, 'within', False), 'cannot last longer than it: 9 x 2 frames > '
     'data.num_frames x data.frame_stride = 8 x 2'),
])
def test_bad_view_specs_are_clear_errors(c, entry, message):
  c.views = (entry,)
  with pytest.raises(ValueError, match=message):
    example_ops.check_config(c)


def test_views_need_their_modalities_and_distinct_names(c):
  c.views = (VIEWS[0], VIEWS[0])
  with pytest.raises(ValueError, match='names must differ'):
    view_ops.parse(c)
  c.views, c.modalities = (VIEWS[0],), ('video',)
  with pytest.raises(ValueError, match='with_audio needs audio'):
    pipeline.output_shapes(c)
  c.modalities = ('audio',)
  with pytest.raises(ValueError, match='views are clips of the video'):
    stream.train_stream(c, batch_size=8, seed=0)


def _keys_by_name(c):
  batch, = list(stream.eval_stream(c, 'test', batch_size=8))
  return dict(zip(batch['filename'], map(tuple, batch['key'])))


def test_record_keys_are_stable_and_distinct(c, tmp_path):
  c.views, c.with_keys = (), True
  assert pipeline.output_shapes(c)['key'] == (2,)
  keys = _keys_by_name(c)
  assert len(keys) == len(set(keys.values())) == 8
  # The same records in other shards, in another order: the same keys.
  dmvr.write_shards(str(tmp_path), 'test', _records()[::-1], 3)
  c.data_dir = str(tmp_path)
  assert _keys_by_name(c) == keys
  # The fingerprint of the record's bytes, as int32 (high, low) halves.
  record = _records()[2]
  digest = tf.fingerprint([record]).numpy()[0]
  expected = int.from_bytes(digest.tobytes(), 'little', signed=True)
  assert key_ops.to_int64(np.array(keys[b'clip2'], np.int32)) == expected


def test_int64_keys_round_trip_through_int32_pairs():
  values = np.array([0, 1, -1, 2**31, 2**32 - 1, 2**63 - 1, -2**63, -2**31 - 7], np.int64)
  pairs = tf.map_fn(key_ops.key_pair, tf.constant(values),
                    fn_output_signature=tf.int32).numpy()
  assert pairs.dtype == np.int32
  np.testing.assert_array_equal(pairs[2], [-1, -1])
  np.testing.assert_array_equal(pairs[3], [0, -2**31])
  np.testing.assert_array_equal(key_ops.to_int64(pairs), values)
  with pytest.raises(ValueError, match='int32 pairs'):
    key_ops.to_int64(values)


@pytest.mark.slow
def test_key_labels_label_each_record_of_a_training_stream(c):
  c.with_keys = True
  keys = _keys_by_name(c)
  labelled = {name: 100 + i for i, name in enumerate(sorted(keys)) if i % 3}  # Some unknown.
  key_labels = (key_ops.to_int64(np.array([keys[n] for n in labelled], np.int32)),
                np.array(list(labelled.values()), np.int32))
  batch = _train_batches(c, n=2, key_labels=key_labels)
  for b in batch:
    expected = [labelled.get(name, -1) for name in b['filename']]
    np.testing.assert_array_equal(b['pseudo_label'], expected)
    assert b['pseudo_label'].dtype == np.int32
  assert {-1, 101} <= set(np.concatenate([b['pseudo_label'] for b in batch]))
  c.with_keys = False  # Labels without the keys themselves.
  b = _train_batches(c, n=1, key_labels=key_labels)[0]
  assert 'key' not in b
  np.testing.assert_array_equal(b['pseudo_label'], [labelled.get(n, -1) for n in b['filename']])
  with pytest.raises(ValueError, match='has a key twice'):
    key_ops.label_table((np.array([1, 1]), np.array([0, 1])))
  with pytest.raises(ValueError, match='shapes'):
    key_ops.label_table((np.array([1, 2]), np.array([0])))
  # The device batch carries them, as int32.
  finished = _finish(b, c)
  assert finished['pseudo_label'].dtype == np.int32


def test_synthetic_data_with_views_and_keys(data_dir):
  c = tiny.get_config().data
  c.data_dir, c.shuffle_buffer, c.with_keys = data_dir, 16, True
  c.views = (('narrow', 4, 1, 16, 'within', True),)
  host = next(stream.train_stream(c, batch_size=4, seed=0))
  batch = _finish(host, c)
  shapes = pipeline.output_shapes(c)
  assert set(batch) == set(shapes)
  for key, shape in shapes.items():
    assert batch[key].shape == (4,) + shape, key
