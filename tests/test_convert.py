"""The converter on real media files made with PyAV: mp4 (H.264 + AAC, MPEG-4 without audio),
avi (MJPEG + PCM at 44.1 kHz), wav; a broken and a missing file; dense narration."""

import collections
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from configs import tiny
from mmv.ingest import clip_lists
from mmv.ingest import convert
from mmv.data import format as fmt
from mmv.data import stream
from tests import cli_in_process
from tests import media_files

# Launches processes, converts media or trains: not in `make test-fast`.
pytestmark = pytest.mark.slow

OPTIONS = dict(fps=10.0, short_side=32, sample_rate=16000, progress=False)
CSV = """video_path,start,end,label,caption
talk.mp4,0.4,1.2,dog,a dog barks
street.avi,,,cat;dog,"a cat, then a dog"
silent.mp4,0,1,cat,
missing.mp4,0,1,cat,
broken.mp4,0,1,cat,
talk.mp4,5,6,dog,too late
"""


@pytest.fixture(scope='module')
def media_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp('media')
  media_files.write_video(str(d / 'talk.mp4'), video_codec='libx264', audio_codec='aac')
  media_files.write_video(str(d / 'street.avi'), video_codec='mjpeg', audio_codec='pcm_s16le',
                          audio_rate=44100)
  media_files.write_video(str(d / 'silent.mp4'), video_codec='mpeg4')
  media_files.write_wav(str(d / 'bird.wav'))
  (d / 'broken.mp4').write_bytes(b'not a video' * 100)
  (d / 'train.csv').write_text(CSV)
  return d


def _examples(output_dir, name):
  paths = tf.io.gfile.glob(os.path.join(output_dir, f'{name}-*-of-*'))
  return {e.context.feature[fmt.FILENAME].bytes_list.value[0].decode(): e
          for path in sorted(paths)
          for e in map(tf.train.SequenceExample.FromString,
                       tf.data.TFRecordDataset(path).as_numpy_iterator())}


def _dmvr_read(example):
  """What DMVR's reader parses: one JPEG per frame, the waveform as floats."""
  _, seq = tf.io.parse_single_sequence_example(
      example.SerializeToString(), sequence_features={
          fmt.IMAGE: tf.io.FixedLenSequenceFeature([], tf.string, allow_missing=True),
          fmt.WAVEFORM: tf.io.VarLenFeature(tf.float32)})
  frames = [tf.io.decode_jpeg(j).numpy() for j in seq[fmt.IMAGE]]
  return frames, tf.sparse.to_dense(seq[fmt.WAVEFORM]).numpy().reshape(-1)


def _context(example, key):
  feature = example.context.feature[key]
  return list(getattr(feature, feature.WhichOneof('kind')).value)


def test_csv_clips_from_real_videos(media_dir, tmp_path):
  out = str(tmp_path / 'out')
  specs, rejected = clip_lists.read_csv(str(media_dir / 'train.csv'), str(media_dir))
  assert rejected == []
  report = convert.convert(specs, out, name='train', num_shards=2, **OPTIONS)
  assert report['written'] == 3 and report['labels'] == ['cat', 'dog']
  reasons = dict(report['skipped'][:2])
  assert 'No such file' in reasons['missing.mp4'] and 'Invalid data' in reasons['broken.mp4']
  assert report['skipped'][2][0] == 'talk.mp4' and 'outside the file' in report['skipped'][2][1]
  assert sorted(os.listdir(out)) == ['labels.txt', 'train-00000-of-00002',
                                     'train-00001-of-00002', 'vocab.txt']
  assert open(os.path.join(out, 'labels.txt')).read() == 'cat\ndog\n'
  examples = _examples(out, 'train')

  talk = examples['talk.mp4']
  frames, wave = _dmvr_read(talk)
  assert len(frames) == 8 and frames[0].shape == (32, 42, 3)  # 64x48 → short side 32.
  # The clip starts at 0.4 s: frame k shows source frame floor((0.4 + k / 10) * 25).
  shown = [np.argmin([abs(f.mean() - media_files.grey(j)) for j in range(40)]) for f in frames]
  assert shown == [int((0.4 + k / 10) * 25 + 1e-9) for k in range(8)]
  assert _context(talk, fmt.START_US) == [400000] and _context(talk, fmt.END_US) == [1200000]
  assert _context(talk, fmt.FPS) == [10.0] and _context(talk, fmt.SAMPLE_RATE) == [16000.0]
  assert _context(talk, fmt.LABEL_INDEX) == [1] and _context(talk, fmt.CAPTION) == [b'a dog barks']
  # Float samples at 16 kHz, the 1 kHz burst (0.6 to 1.0 s) 0.2 s into the clip.
  assert wave.dtype == np.float32 and len(wave) == 12800 and not np.isnan(wave).any()
  loud = np.flatnonzero(np.abs(wave) > 0.2) / 16000
  np.testing.assert_allclose([loud[0], loud[-1]], [0.2, 0.6], atol=0.01)

  street = examples['street.avi']
  frames, wave = _dmvr_read(street)
  assert len(frames) == 16 and len(wave) == 16 * 1600  # The whole 1.6 s, resampled from 44.1k.
  assert _context(street, fmt.LABEL_INDEX) == [0, 1]
  assert _context(street, fmt.CAPTION) == [b'a cat, then a dog']
  silent = examples['silent.mp4']
  frames, wave = _dmvr_read(silent)
  assert len(frames) == 10 and len(wave) == 0
  assert _context(silent, fmt.HAS_AUDIO) == [0] and _context(talk, fmt.HAS_AUDIO) == [1]

  # The reader takes it as it is; the silent clip's audio is masked.
  c = tiny.get_config().data
  c.data_dir, c.split, c.audio_sample_rate, c.with_names = out, 'train', 16000.0, True
  c.stft_window, c.stft_hop = 512, 256
  batch, = list(stream.eval_stream(c, 'train', batch_size=3))
  assert dict(zip(batch['filename'], batch['audio_mask'])) == {
      b'talk.mp4': 1, b'street.avi': 1, b'silent.mp4': 0}
  assert np.isfinite(batch['audio']).all() and batch['text_mask'][:, 0].sum() == 2

  # Another split in the same directory gets the same label ids; an unknown label is refused.
  (media_dir / 'test.csv').write_text('street.avi,0,1,dog\n')
  convert.convert(clip_lists.read_csv(str(media_dir / 'test.csv'), str(media_dir))[0], out,
                  name='test', num_shards=1, **OPTIONS)
  assert _context(_examples(out, 'test')['street.avi'], fmt.LABEL_INDEX) == [1]
  (media_dir / 'other.csv').write_text('street.avi,0,1,bird\n')
  with pytest.raises(ValueError, match="labels \\['bird'\\] are not in the label map"):
    convert.convert(clip_lists.read_csv(str(media_dir / 'other.csv'), str(media_dir))[0], out,
                    name='other', num_shards=1, **OPTIONS)


def test_narration_and_audio_only_inputs(media_dir, tmp_path):
  out = str(tmp_path / 'out')
  # What a downloader leaves beside the video (sorting before it) is not taken for it.
  for sidecar in ('talk.description', 'talk.info.json', 'gone.description'):
    (media_dir / sidecar).write_text('{}')
  narration = {'talk': {'start': [1.0, 0.1, 0.5], 'end': [1.4, 0.4, 0.9],
                        'text': ['three', 'one', 'two']},
               'gone': {'start': [0.0], 'end': [1.0], 'text': ['lost']}}
  (media_dir / 'narration.json').write_text(json.dumps(narration))
  specs = clip_lists.read_narration(str(media_dir / 'narration.json'), str(media_dir),
                                 min_clip_seconds=0.6, num_captions=2)
  report = convert.convert(specs, out, name='train', num_shards=1, **OPTIONS)
  assert report['written'] == 3
  assert report['skipped'] == [('gone', 'MediaError: no such file')]
  shard = tf.data.TFRecordDataset(os.path.join(out, 'train-00000-of-00001'))
  clips = list(map(tf.train.SequenceExample.FromString, shard.as_numpy_iterator()))
  # One clip per caption, at least 0.6 s around it, with it and its nearest caption.
  assert [_context(e, fmt.CAPTION) for e in clips] == [[b'one', b'two'], [b'two', b'one'],
                                                        [b'three', b'two']]
  assert [_context(e, fmt.START_US) for e in clips] == [[0], [400000], [900000]]
  assert _context(clips[1], fmt.CAPTION_START_US) == [500000, 100000]
  assert _context(clips[1], fmt.CAPTION_END_US) == [900000, 400000]

  (media_dir / 'sounds.csv').write_text('bird.wav,0.2,1.4,bird\n')
  convert.convert(clip_lists.read_csv(str(media_dir / 'sounds.csv'), str(media_dir))[0], out,
                  name='sounds', num_shards=1, **OPTIONS)
  bird = _examples(out, 'sounds')['bird.wav']
  frames, wave = _dmvr_read(bird)
  assert frames == [] and _context(bird, fmt.HAS_VIDEO) == [0] and len(wave) == 1.2 * 16000
  c = tiny.get_config().data
  c.data_dir, c.modalities, c.audio_sample_rate = out, ('audio',), 16000.0
  c.stft_window, c.stft_hop = 512, 256
  batch, = list(stream.eval_stream(c, 'sounds', batch_size=1))
  assert batch['audio_mask'][0] == 1 and np.isfinite(batch['audio']).all()


def test_the_vocabulary_counts_each_narration_caption_once(media_dir, tmp_path):
  """Every clip stores its 3 nearest captions, so a caption is in up to 3 clips' records;
  vocab.txt counts it once, as the narration lists it."""
  narration = {'talk': {'start': [0.0, 0.3, 0.6, 0.9, 1.2], 'end': [0.3, 0.6, 0.9, 1.2, 1.5],
                        'text': ['a dog', 'the dog runs', 'a cat', 'the dog sits', 'a bird']},
               'silent': {'start': [0.1, 0.5], 'end': [0.4, 0.9], 'text': ['a cat', 'a cat']}}
  (tmp_path / 'narration.json').write_text(json.dumps(narration))
  specs = clip_lists.read_narration(str(tmp_path / 'narration.json'), str(media_dir),
                                 min_clip_seconds=0.3, num_captions=3)
  assert max(sum(c == 'the dog runs' for c in s.captions) for s in specs) == 1
  assert sum('the dog runs' in s.captions for s in specs) == 3  # Stored by three clips.
  out = tmp_path / 'out'
  convert.convert(specs, str(out), name='train', num_shards=1, **OPTIONS)
  counts = collections.Counter(word for entry in narration.values() for caption in entry['text']
                               for word in caption.split())
  assert counts['a'] == 5 and counts['dog'] == 3
  assert (out / 'vocab.txt').read_text().split() == sorted(counts, key=lambda w: (-counts[w], w))


def test_command_line_with_parallel_workers_writes_the_same_shards(media_dir, tmp_path, capsys):
  serial = str(tmp_path / 'serial')
  convert.convert(clip_lists.read_csv(str(media_dir / 'train.csv'), str(media_dir))[0], serial,
                  name='train', num_shards=2, **OPTIONS)
  parallel = str(tmp_path / 'parallel')
  # The command's main in this process (its flags and output as launched; tests/cli_in_process):
  # its 2 decoding workers are processes still.
  capsys.readouterr()
  cli_in_process.run('mmv.ingest.convert', [
      f'--input_csv={media_dir / "train.csv"}', f'--video_root={media_dir}',
      f'--output_dir={parallel}', '--name=train', '--num_shards=2', '--fps=10',
      '--short_side=32', '--sample_rate=16000', '--num_workers=2'], known_only=True)
  result = capsys.readouterr()
  assert 'wrote 3 clips to 2 shards' in result.out and 'skipped 3:' in result.out
  assert '100%' not in result.err  # No progress bar: stderr is not a terminal.
  for name in ('train-00000-of-00002', 'train-00001-of-00002', 'labels.txt', 'vocab.txt'):
    with open(os.path.join(serial, name), 'rb') as a, open(os.path.join(parallel, name), 'rb') as b:
      assert a.read() == b.read(), name
