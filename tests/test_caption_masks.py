"""A caption of stop words only is no text: through the reader, on shards the converter wrote.

Such a caption tokenises to all padding; it must get `text_mask` 0 (or not be chosen at all),
in training's K draws, in evaluation's first K, for timed captions and for K = 1 (retrieval's
query), and a clip whose captions are all stop words has no text.
"""

import numpy as np
import pytest
import tensorflow as tf

from configs import tiny
from mmv.ingest import convert
from mmv.ingest import media
from mmv.data import stream
from mmv.data import text as text_ops

VOCAB = ['cat', 'sat', 'mat', 'dog']
STOP_WORDS = ('the', 'on', 'a')
# Clips of 3 s: the evaluation clip (4 frames, stride 2, 10 fps) starts at 1.1 s, centre 1.5 s.
SPECS = [
    media.ClipSpec('stop_first', None, 0.0, 3.0, captions=('The... on', 'the cat sat')),
    media.ClipSpec('all_stop', None, 0.0, 3.0, captions=('the', 'On the', '!')),
    # The two captions nearest the clip's centre (middles 1.5 s) are stop words only.
    media.ClipSpec('timed', None, 0.0, 3.0, captions=('a', 'dog', 'the', 'cat mat'),
                   caption_starts=(1.2, 0.0, 1.4, 2.4), caption_ends=(1.8, 0.4, 1.6, 2.8)),
    media.ClipSpec('timed_all_stop', None, 0.0, 3.0, captions=('a', 'the'),
                   caption_starts=(1.2, 1.4), caption_ends=(1.8, 1.6)),
]


def _ids(*words):
  return [VOCAB.index(w) + 2 for w in words]


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('captions'))
  jpegs = [tf.io.encode_jpeg(np.full((24, 32, 3), 8 * i, np.uint8)).numpy() for i in range(30)]
  clip = media.Clip(jpegs=jpegs, waveform=np.zeros(3000, np.float32), start=0.0, end=3.0)
  for split in ('train', 'test'):
    convert.write_shards([(spec, clip) for spec in SPECS], path, name=split, num_shards=1,
                         labels=[], fps=10.0, sample_rate=1000, progress=False)
  with open(f'{path}/vocab.txt', 'w') as f:
    f.write('\n'.join(VOCAB) + '\n')
  return path


@pytest.fixture
def c(data_dir):
  c = tiny.get_config().data
  c.data_dir = data_dir
  c.num_frames, c.frame_stride, c.fps, c.crop_size = 4, 2, 10.0, 16
  c.audio_sample_rate, c.audio_format = 1000.0, 'waveform'
  c.num_captions, c.max_words, c.stop_words = 2, 4, STOP_WORDS
  c.with_names, c.shuffle_buffer = True, 4
  return c


def _by_name(batch):
  return {name.decode(): (text, mask) for name, text, mask in
          zip(batch['filename'], batch['text'], batch['text_mask'])}


def _assert_masks_mark_words(batch):
  """Every caption with text_mask 1 has a word."""
  has_words = (batch['text'] != text_ops.PAD_ID).any(-1)
  assert has_words[batch['text_mask'] > 0].all()


def test_evaluation_takes_the_first_captions_with_words(c):
  batch, = list(stream.eval_stream(c, 'test', batch_size=4))
  _assert_masks_mark_words(batch)
  rows = _by_name(batch)
  text, mask = rows['stop_first']
  np.testing.assert_array_equal(mask, [1, 0])
  np.testing.assert_array_equal(text[0], _ids('cat', 'sat') + [0, 0])
  np.testing.assert_array_equal(rows['all_stop'][1], [0, 0])
  # The nearest captions with words, in order of distance: 'cat mat' (2.6 s), 'dog' (0.2 s).
  text, mask = rows['timed']
  np.testing.assert_array_equal(mask, [1, 1])
  np.testing.assert_array_equal(text, [_ids('cat', 'mat') + [0, 0], _ids('dog') + [0, 0, 0]])
  np.testing.assert_array_equal(rows['timed_all_stop'][1], [0, 0])


def test_one_caption_per_clip_is_the_first_with_words(c):
  """K = 1: the retrieval query of a clip, which has no query when all its captions are stop
  words."""
  c.num_captions = 1
  batch, = list(stream.eval_stream(c, 'test', batch_size=4))
  rows = _by_name(batch)
  np.testing.assert_array_equal(rows['stop_first'][0], [_ids('cat', 'sat') + [0, 0]])
  np.testing.assert_array_equal(rows['stop_first'][1], [1])
  np.testing.assert_array_equal(rows['all_stop'][1], [0])
  np.testing.assert_array_equal(rows['timed'][0], [_ids('cat', 'mat') + [0, 0]])
  np.testing.assert_array_equal(rows['timed_all_stop'][1], [0])


def test_training_draws_only_captions_with_words(c):
  s = stream.train_stream(c, batch_size=4, seed=0)
  for _ in range(3):  # 12 draws of K = 2 captions per clip, random clip offsets.
    batch = next(s)
    _assert_masks_mark_words(batch)
    rows = _by_name(batch)
    text, mask = rows['stop_first']
    np.testing.assert_array_equal(mask, [1, 1])
    np.testing.assert_array_equal(text, [_ids('cat', 'sat') + [0, 0]] * 2)
    np.testing.assert_array_equal(rows['all_stop'][1], [0, 0])
    np.testing.assert_array_equal(rows['timed'][1], [1, 1])
    np.testing.assert_array_equal(rows['timed_all_stop'][1], [0, 0])
