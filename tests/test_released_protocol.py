"""UCF101 as DeepMind's released script measures it: which frames of which videos the model sees
(videos whose every frame tells its number), the classifier, and what a TFDS build changes."""

import copy
import os

import jax
import numpy as np
import pytest
import tensorflow as tf

from mmv import benchmarks
from mmv import evaluate
from mmv import evaluate_protocol
from mmv.benchmarks import protocols
from mmv.data import video as video_ops
from mmv.evaluators import features as features_lib
from mmv.evaluators import linear_probe
from tests import conftest
from tests import media_files

# Launches processes, converts media or trains: not in `make test-fast`.
pytestmark = pytest.mark.slow

CLASSES = ('ApplyEyeMakeup', 'Archery')
# (class, group, clip) → frames at 25 fps; split 1 tests on group 1, trains on groups 2 and 3.
VIDEOS = {
    (0, 1, 1): 510,  # 20.4 s: longer than the released script's 20 s.
    (1, 1, 1): 101,  # Test windows from 0 to 101 - 64 = 37.
    (1, 1, 2): 40,  # Shorter than a clip (63 frames): every window starts at 0 and wraps.
    (0, 2, 1): 150,
    (1, 2, 1): 40,
    (0, 3, 1): 40,
    (1, 3, 1): 30,
}
LENGTHS = {i: frames for i, frames in enumerate(VIDEOS.values())}
TEST_VIDEOS = (0, 1, 2)
TRAIN_PASSES, TEST_CLIPS = 3, 4


def _name(key):
  c, g, n = key
  return f'{CLASSES[c]}/v_{CLASSES[c]}_g{g:02d}_c{n:02d}.avi'


def numbered_ucf101(root):
  """A UCF101 layout of the VIDEOS, video i's frame k `media_files.numbered_colour(k, i)`."""
  lists = os.path.join(root, 'ucfTrainTestlist')
  os.makedirs(lists)
  with open(os.path.join(lists, 'classInd.txt'), 'w') as f:
    f.write(''.join(f'{i} {c}\n' for i, c in enumerate(CLASSES, 1)))
  for split in (1, 2, 3):
    with open(os.path.join(lists, f'trainlist0{split}.txt'), 'w') as f:
      f.write(''.join(f'{_name(k)} {k[0] + 1}\n' for k in VIDEOS if k[1] != split))
    with open(os.path.join(lists, f'testlist0{split}.txt'), 'w') as f:
      f.write(''.join(f'{_name(k)}\n' for k in VIDEOS if k[1] == split))
  for i, (key, frames) in enumerate(VIDEOS.items()):
    path = os.path.join(root, 'UCF-101', _name(key))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    media_files.write_numbered_video(path, frames, video=i)


@pytest.fixture(scope='module')
def run(data_dir, tmp_path_factory):
  """(config, workdir) of a `small_config` run, freshly initialised (checkpoint 1): the
  protocol's frames and classifier do not depend on trained weights."""
  config = conftest.small_config(data_dir)
  return config, conftest.initialised_run(config, str(tmp_path_factory.mktemp('run')), 1)


def _stand_in(embed, variables, batch, shapes_seen):
  """What the model would give (`embed`'s output structure, by jax.eval_shape: nothing
  compiled or run at 224 x 224 x 32), filled with each clip's mean colour: features the
  classifier can fit. The model on these batches: test_evaluate.py's
  test_ucf101_is_measured_by_the_released_script_protocol."""
  key = tuple((k, np.shape(v)) for k, v in sorted(batch.items()))
  if key not in shapes_seen:  # One trace per batch shape.
    shapes_seen[key] = jax.eval_shape(embed, variables, batch)
  shapes = shapes_seen[key]
  colour = np.asarray(batch['video']).mean(axis=(1, 2, 3))  # [clips, 3]
  return {k: np.tile(colour, (1, -(-s.shape[-1] // 3)))[:, :s.shape[-1]].astype(s.dtype)
          for k, s in shapes.items()}


@pytest.fixture(scope='module')
def measured(run, tmp_path_factory):
  """The UCF101 protocol's defaults (passes and clips shrunk) on the numbered videos:
  (record, [(video, [frames]) per clip the model saw], the probe's keyword arguments)."""
  config, workdir = run
  config = copy.deepcopy(config)
  block = config.eval.ucf101
  block.train_passes, block.test_clips = TRAIN_PASSES, TEST_CLIPS
  root = str(tmp_path_factory.mktemp('ucf'))
  numbered_ucf101(root)
  bench = benchmarks.get('ucf101')
  clips, probe_kwargs = [], []
  make, probe = features_lib.make_embed_fn, linear_probe.linear_probe

  shapes_seen = {}

  def spying(model, modality, with_text, spaces=False):
    embed = make(model, modality, with_text, spaces)
    seen = shapes_seen.setdefault((modality, with_text, spaces), {})

    def spy(variables, batch):
      colours = np.asarray(batch['video'])[:, :, 112, 112] * 255.0  # [clips, frames, 3]
      for row in np.flatnonzero(np.asarray(batch['mask']) > 0):
        videos, frames = media_files.frame_numbers(colours[row])
        assert len(set(videos)) == 1
        clips.append((int(videos[0]), frames))
      return _stand_in(embed, variables, batch, seen)

    return spy

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(features_lib, 'make_embed_fn', spying)
    patch.setattr(linear_probe, 'linear_probe',
                  lambda *args, **kwargs: probe_kwargs.append(kwargs) or probe(*args, **kwargs))
    prepared = evaluate.prepare_splits(bench, config, root, short_side=0, num_workers=1,
                                       progress=False)
    record = evaluate.evaluate_step(config, bench, prepared, workdir, 1,
                                    cache_features=False, progress=False)
  return record, clips, probe_kwargs


def _released_windows(frames):
  """The released script's test-window offsets: linspace(0, L - 32 x 2, windows) truncated,
  over the first 20 s (500 frames at 25 fps)."""
  available = min(frames, 500)
  return np.linspace(0.0, max(available - 64, 0), TEST_CLIPS).astype(int).tolist()


def _windows(clips, video):
  return [frames for v, frames in clips if v == video]


def test_every_clip_is_32_frames_2_apart_wrapping_in_its_video(measured):
  _, clips, _ = measured
  assert len(clips) == TRAIN_PASSES * (len(VIDEOS) - len(TEST_VIDEOS)) + TEST_CLIPS * len(
      TEST_VIDEOS)
  for video, frames in clips:
    available = min(LENGTHS[video], 500)
    np.testing.assert_array_equal(frames, (frames[0] + 2 * np.arange(32)) % available)


def test_only_the_first_20_seconds_are_read(measured):
  record, clips, _ = measured
  windows = _windows(clips, 0)  # 510 frames: windows over the first 500 only.
  assert [w[0] for w in windows] == _released_windows(510) == [0, 145, 290, 436]
  assert max(w.max() for w in windows) < 500
  assert protocols.DEFAULTS['ucf101']['max_seconds'] == 20.0
  assert protocols.DEFAULTS['hmdb51']['max_seconds'] == 20.0
  assert record['protocol']['max_seconds'] == 20.0


def test_test_windows_start_where_the_released_script_starts_them(measured):
  _, clips, _ = measured
  assert [w[0] for w in _windows(clips, 1)] == _released_windows(101) == [0, 12, 24, 37]
  assert [w[0] for w in _windows(clips, 2)] == [0] * TEST_CLIPS  # Shorter than a window.


def test_short_videos_draw_training_offsets_over_the_whole_video(measured):
  _, clips, _ = measured
  offsets = {v: [frames[0] for frames in _windows(clips, v)] for v in LENGTHS
             if v not in TEST_VIDEOS}
  assert all(len(o) == TRAIN_PASSES for o in offsets.values())
  for video, drawn in offsets.items():
    last = LENGTHS[video] - 63 if LENGTHS[video] >= 63 else LENGTHS[video] - 1
    assert all(0 <= o <= last for o in drawn), (video, drawn)
  # 9 draws in [0, 40) or [0, 30): all 0 with probability 1e-13, as before the released rule.
  short = [o for v, drawn in offsets.items() if LENGTHS[v] < 63 for o in drawn]
  assert len(short) == 9 and any(short)


def test_the_svm_is_the_released_scripts_and_the_record_is_published(measured):
  record, _, probe_kwargs = measured
  (kwargs,) = probe_kwargs
  assert kwargs['dual'] is True and kwargs['max_iter'] == 1000  # scikit-learn 0.23's defaults.
  assert kwargs['c_grid'] == (1e-3,)
  p = record['protocol']
  assert p['differs_from_published'] == ['test_clips', 'train_passes']
  assert p['clip_offsets'].startswith('dmvr')
  assert p['linear']['classifier'].endswith('(solver dual, max_iter 1000)')


def test_published_means_the_released_protocol(run):
  config, _ = run
  bench = benchmarks.get('ucf101')
  defaults = evaluate_protocol.protocol_settings(config, bench, ['1'])
  assert defaults['published'] and 'differs_from_published' not in defaults
  for field, value in (('clip_offsets', 'mmv'), ('max_seconds', 0.0), ('svm_solver', 'auto'),
                       ('svm_max_iter', 10000)):
    other = copy.deepcopy(config)
    other.eval.ucf101[field] = value
    settings = evaluate_protocol.protocol_settings(other, bench, ['1'])
    assert not settings['published'] and settings['differs_from_published'] == [field]
  squashed = ('frames: TFDS ucf101_1_256 resized every video to 256x256',)
  settings = evaluate_protocol.protocol_settings(config, bench, ['1'], squashed)
  assert not settings['published'] and settings['differs_from_published'] == list(squashed)


def test_clip_offsets_are_the_released_scripts_for_any_length():
  """Test windows: int(linspace(0, L - 64, N)); training: [0, L - 63], or [0, L) below 63."""
  for windows in (1, 4, 10):
    for length in range(1, 700, 7):
      got = video_ops.clip_offsets(tf.constant(length), 63, num_clips=windows, train=False,
                                   seed=None, rule='dmvr', stride=2)
      want = np.linspace(0.0, max(length - 64, 0), windows).astype(int)
      np.testing.assert_array_equal(got, want, err_msg=f'{length} frames, {windows} windows')
  for length, high in ((40, 40), (62, 62), (63, 1), (100, 38)):
    drawn = {int(video_ops.clip_offsets(tf.constant(length), 63, num_clips=1, train=True,
                                        seed=tf.constant([seed, 0]), rule='dmvr')[0])
             for seed in range(400)}
    # 400 draws see nearly all of up to 62 values (all but 0.1 of them on average).
    assert drawn <= set(range(high)) and len(drawn) >= 0.9 * high, (length, sorted(drawn))
    assert max(drawn) >= 0.9 * (high - 1)
