"""Media whose timestamps do not start at 0 (MPEG-TS, HLS segments, files cut with -copyts):
clip times are seconds from the file's start. Files made with PyAV whose timestamps start at
10 s give the clips of the same content starting at 0, in `media.read_clip`, the converter and
`mmv.embed`; PyAV's own MPEG-TS, whose video starts after its sound's AAC priming, gives the
clips of the same content in MP4 and Matroska; a clip inside an H.264 MPEG-TS decodes from the
key frame before it."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from mmv import embed as embed_cli
from mmv import index_files
from mmv.ingest import clip_lists
from mmv.ingest import convert
from mmv.data import format as fmt
from mmv.ingest import media
from tests import media_files
from tests import test_inference
# The inference tests' checkpoint and its `inference.Model`, as fixtures.
from tests.test_inference import model, workdir  # pylint: disable=unused-import

# Launches processes, converts media or trains: not in `make test-fast`.
pytestmark = pytest.mark.slow

OPTIONS = dict(fps=10.0, short_side=32, sample_rate=16000, qscale=3)
RATE = OPTIONS['sample_rate']
LATE = 10.0  # Where the late files' timestamps start.
# A whole file, a clip inside it, and one running past its end (a short clip).
CLIPS = [(0.0, None), (0.5, 1.2), (0.0, 3.0)]
# The sound is placed to the output sample: two files whose sound starts a fraction of a sample
# apart (one keeping its AAC priming before the first frame, one not) may differ by half a
# sample of the 1 kHz tone's phase (amplitude 0.5).
PHASE = 0.5 * 2 * np.pi * 1000 / (2 * RATE)
GREY = 2  # Grey levels the codecs and JPEG may change; frames are 6 levels apart.
PRIMING = 1024 / 48000  # The AAC encoder's priming: an MPEG-TS of sound alone starts with it.


@pytest.fixture(scope='module')
def files(tmp_path_factory):
  d = tmp_path_factory.mktemp('start')
  for start, name in ((0.0, 'early'), (LATE, 'late')):
    for ext in ('ts', 'mp4', 'mkv'):
      media_files.write_from(str(d / f'{name}.{ext}'), start)
    media_files.write_from(str(d / f'{name}.h264.ts'), start, video_codec='libx264')
    for ext in ('ts', 'mka'):
      media_files.write_from(str(d / f'{name}.sound.{ext}'), start, video=False)
    # ALAC, not AAC: an MP4 starting at 0 trims the AAC priming, one starting later plays it.
    media_files.write_from(str(d / f'{name}.sound.m4a'), start, video=False, audio_codec='alac')
  return d


def _read(path, start=0.0, end=None):
  spec = media.ClipSpec(name=os.path.basename(path), path=str(path), start=start, end=end)
  return media.read_clip(spec, **OPTIONS)


def _greys(jpegs):
  return [float(tf.io.decode_jpeg(j).numpy().mean()) for j in jpegs]


def _check_frames(clip, start, end):
  """The frames of [start, end) at OPTIONS' rate are those written (frame k at k / FPS), as
  far as the file goes."""
  end = min(end or media_files.SECONDS, media_files.SECONDS)
  times = start + np.arange(round((end - start) * OPTIONS['fps'])) / OPTIONS['fps']
  expected = [media_files.grey(int(np.floor(t * media_files.FPS + 1e-6))) for t in times]
  np.testing.assert_allclose(_greys(clip.jpegs), expected, atol=GREY)


def _check_tone(waveform, start, lead=0.0):
  """The tone starts where it was written, BURST[0] seconds from the file's start (`lead`
  seconds of sound before what was written start the file)."""
  onset = np.argmax(np.abs(waveform) > 0.1) / RATE + start
  assert onset == pytest.approx(media_files.BURST[0] + lead, abs=2 / RATE)


def _check_same(late, early, start, end, lead=0.0, end_slack=1e-6):
  """Clip `late` has the frames and sound of `early` (and where the frames and the tone were
  written); their ends differ by at most `end_slack`."""
  assert len(late.jpegs) == len(early.jpegs)
  np.testing.assert_allclose(_greys(late.jpegs), _greys(early.jpegs), atol=1)
  assert (late.start, late.short) == (early.start, early.short)
  assert late.end == pytest.approx(early.end, abs=end_slack)
  assert len(late.waveform) == len(early.waveform)
  np.testing.assert_allclose(late.waveform, early.waveform, atol=PHASE)
  if start < media_files.BURST[0]:
    _check_tone(late.waveform, start, lead)
  if late.jpegs:
    _check_frames(late, start, end)


@pytest.mark.parametrize('name', ['ts', 'mp4', 'mkv', 'h264.ts'])
def test_a_video_starting_late_gives_the_clips_of_the_same_video_starting_at_0(files, name):
  for start, end in CLIPS:
    late, early = _read(files / f'late.{name}', start, end), _read(files / f'early.{name}', start,
                                                                    end)
    _check_same(late, early, start, end)
  # The whole file lasts its frames, or its sound, which ends an AAC packet (21 ms) later.
  assert _read(files / f'late.{name}').end == pytest.approx(media_files.SECONDS, abs=0.022)
  with pytest.raises(media.MediaError, match=r'outside the file \(1.6\d s long\)'):
    _read(files / f'late.{name}', 2.0)


def test_a_clip_inside_an_h264_mpeg_ts_decodes_from_the_key_frame_before_it(files):
  # FFmpeg seeks an MPEG-TS to a packet at or before the time, not to a key frame: here the
  # file's only one is its first frame.
  for start, end in ((0.04, 0.5), (0.5, 1.2), (1.1, None)):
    _check_frames(_read(files / 'early.h264.ts', start, end), start, end)


@pytest.mark.parametrize('name, lead', [('sound.ts', PRIMING), ('sound.mka', 0),
                                        ('sound.m4a', 0)])
def test_a_sound_starting_late_gives_the_clips_of_the_same_sound_starting_at_0(files, name,
                                                                                lead):
  for start, end in CLIPS:
    late, early = _read(files / f'late.{name}', start, end), _read(files / f'early.{name}', start,
                                                                    end)
    _check_same(late, early, start, end, lead)


def test_pyav_mpeg_ts_gives_the_clips_of_the_same_video_in_mp4_and_matroska(files):
  # PyAV's MPEG-TS starts with the sound's AAC priming, its video 21 ms later (MP4 and
  # Matroska trim the priming): the video's start is the file's. A whole Matroska file lasts
  # as long as its sound, which ends 21 ms after the frames.
  for start, end in CLIPS:
    ts = _read(files / 'early.ts', start, end)
    for other in ('mp4', 'mkv'):
      _check_same(ts, _read(files / f'early.{other}', start, end), start, end, end_slack=0.022)


def _records(output_dir, name):
  """{(file name, clip start µs): (JPEGs, waveform, clip end µs, caption starts µs)} of the
  records of split `name`, as TensorFlow reads them."""
  records = {}
  for path in tf.io.gfile.glob(os.path.join(output_dir, f'{name}-*-of-*')):
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
      example = tf.train.SequenceExample.FromString(record)
      context, lists = example.context.feature, example.feature_lists.feature_list
      key = (context[fmt.FILENAME].bytes_list.value[0].decode(),
             context[fmt.START_US].int64_list.value[0])
      records[key] = ([f.bytes_list.value[0] for f in lists[fmt.IMAGE].feature],
                      np.array(lists[fmt.WAVEFORM].feature[0].float_list.value),
                      context[fmt.END_US].int64_list.value[0],
                      list(context[fmt.CAPTION_START_US].int64_list.value))
  return records


def _check_same_record(late, early):
  np.testing.assert_allclose(_greys(late[0]), _greys(early[0]), atol=1)
  np.testing.assert_allclose(late[1], early[1], atol=PHASE)
  assert late[2:] == early[2:]


def test_the_converter_stores_csv_and_caption_times_from_the_files_start(files, tmp_path):
  # CSV rows: each file whole, and a clip inside it.
  (tmp_path / 'clips.csv').write_text(''.join(
      f'{n},{times}\n' for n in ('early.ts', 'late.ts', 'early.mkv', 'late.mkv')
      for times in (',', '0.5,1.2')))
  specs, _ = clip_lists.read_csv(str(tmp_path / 'clips.csv'), str(files))
  convert.convert(specs, str(tmp_path / 'csv'), name='test', num_shards=1, progress=False,
                  fps=10.0, short_side=32, sample_rate=RATE)
  records = _records(str(tmp_path / 'csv'), 'test')
  assert len(records) == 8
  for ext in ('ts', 'mkv'):
    for start in (0, 500000):
      _check_same_record(records[f'late.{ext}', start], records[f'early.{ext}', start])
    assert records[f'late.{ext}', 0][2] == pytest.approx(1.6e6, abs=3e4)
    assert records[f'late.{ext}', 500000][2] == 1200000
    _check_tone(records[f'late.{ext}', 0][1], 0.0)
  # Narration: one caption on the tone, BURST seconds from each file's start.
  burst = {'start': [media_files.BURST[0]], 'end': [media_files.BURST[1]], 'text': ['a tone']}
  (tmp_path / 'caption.json').write_text(json.dumps({'early': burst, 'late': burst}))
  (tmp_path / 'videos').mkdir()
  for name in ('early', 'late'):
    os.symlink(files / f'{name}.mp4', tmp_path / 'videos' / f'{name}.mp4')
  specs = clip_lists.read_narration(str(tmp_path / 'caption.json'), str(tmp_path / 'videos'),
                                 min_clip_seconds=1.0, num_captions=1)
  convert.convert(specs, str(tmp_path / 'narration'), name='train', num_shards=1,
                  progress=False, fps=10.0, short_side=32, sample_rate=RATE)
  records = _records(str(tmp_path / 'narration'), 'train')
  # The clip is the second around the caption's middle, [0.3, 1.3] s; the tone the caption
  # times starts 0.3 s into it.
  late = records['late', 300000]
  assert late[2:] == (1300000, [600000])
  _check_same_record(late, records['early', 300000])
  _check_tone(late[1], 0.3)
  _check_frames(media.Clip(jpegs=late[0], waveform=None, start=0.3, end=1.3), 0.3, 1.3)


def test_embed_reports_clip_times_from_the_files_start(model, files, tmp_path):
  names = ['early.ts', 'late.ts', 'early.mkv', 'late.mkv']
  got = model.embed_videos([str(files / n) for n in names], clips=2)
  # Clips of 8 frames at stride 2 (1.6 s) in 16 frames at 10 fps: at frames 0 and 1.
  np.testing.assert_allclose(got.clip_times[1], [[0, 1.6], [0.1, 1.6]], atol=1e-6)
  for late, early in ((1, 0), (3, 2)):
    np.testing.assert_allclose(got.clip_times[late], got.clip_times[early], atol=1e-6)
    np.testing.assert_allclose(got.vat[late], got.vat[early], atol=1e-4)
  (tmp_path / 'videos').mkdir()
  for name in ('early.ts', 'late.ts'):
    os.symlink(files / name, tmp_path / 'videos' / name)
  specs, _ = embed_cli.list_inputs(str(tmp_path / 'videos'))
  report = embed_cli.build_index(model, test_inference.synthetic_protocol(model), specs,
                                 str(tmp_path / 'index'), hop=0.5, progress=False)
  assert report['new'] == 2 and not report['unreadable']
  stored = index_files.read_index(str(tmp_path / 'index'))
  # Windows of 1.6 s every 0.5 s in a 1.6 s file: one, from its first frame, in both files.
  for row in range(2):
    np.testing.assert_allclose(stored.window_times[stored.window_file == row], [[0, 1.6]],
                               atol=1e-3)
  np.testing.assert_allclose(stored.window_vectors['vat'][0], stored.window_vectors['vat'][1],
                             atol=1e-4)
