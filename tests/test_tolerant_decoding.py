"""Decoding damaged and short files as the ffmpeg command line does, on real files made with
PyAV: an AVI (MPEG-4 + AC-3 48 kHz stereo) with an undecodable audio packet, one whose audio
is all undecodable, the same AVI cut short, a wav, an MP4 whose MP3 audio decodes beyond ±1."""

import fractions
import math
import os
import subprocess
import sys

import av
import numpy as np
import pytest

from mmv.ingest import clip_records
from mmv.ingest import convert
from mmv.data import format as fmt
from mmv.ingest import media
from tests import media_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPTIONS = dict(fps=10.0, short_side=32, sample_rate=16000, qscale=3)
RATE = OPTIONS['sample_rate']
CORRUPT = 20  # The audio packet replaced by garbage: in the file at 20 * 32 ms = 0.64 s.
LOST = CORRUPT * media_files.AC3_FRAME / 48000
PACKET = media_files.AC3_FRAME / 48000  # 32 ms.
EDGE = 0.002  # Seconds the resampler's filter smears an edge.
OVERLAP = 256 / 48000  # An AC-3 frame's first block overlaps the frame before, lost or not.


@pytest.fixture(scope='module')
def files(tmp_path_factory):
  d = tmp_path_factory.mktemp('damaged')
  media_files.write_avi_ac3(str(d / 'intact.avi'))
  media_files.write_avi_ac3(str(d / 'damaged.avi'), corrupt=(CORRUPT,))
  media_files.write_avi_ac3(str(d / 'mute.avi'), corrupt=range(100))
  media_files.write_avi_ac3(str(d / 'headless.avi'), corrupt_video=range(20))  # 0 to 0.8 s.
  data = (d / 'intact.avi').read_bytes()
  (d / 'cut.avi').write_bytes(data[:len(data) * 2 // 5])
  media_files.write_mp4_mp3(str(d / 'peaks.mp4'))
  media_files.write_video(str(d / 'silent.mp4'), video_codec='mpeg4')
  media_files.write_wav(str(d / 'bird.wav'))
  return d


def _read(path, start=0.0, end=None, **options):
  spec = media.ClipSpec(name=os.path.basename(path), path=str(path), start=start, end=end)
  return media.read_clip(spec, **{**OPTIONS, **options})


def _at(seconds):
  return int(round(seconds * RATE))


def _check_gap(waveform, intact, start):
  """`waveform` is silent over the corrupted packet and equal to `intact` (the clip of the
  undamaged file) outside it, widened by the packet before it that FFmpeg's AC-3 parser joins
  to the garbage, by the overlap of the packet after it, and by the resampler's edge."""
  assert len(waveform) == len(intact)
  lost = LOST - start
  np.testing.assert_array_equal(waveform[_at(lost + EDGE):_at(lost + PACKET - EDGE)], 0)
  before, after = _at(lost - PACKET - EDGE), _at(lost + PACKET + OVERLAP + EDGE)
  np.testing.assert_allclose(waveform[:before], intact[:before], atol=1e-4)
  np.testing.assert_allclose(waveform[after:], intact[after:], atol=1e-4)


def test_an_undecodable_audio_packet_is_skipped_and_leaves_silence_in_time(files):
  intact, damaged = _read(files / 'intact.avi'), _read(files / 'damaged.avi')
  assert (intact.packets_skipped, damaged.packets_skipped) == (0, 1)
  assert len(damaged.jpegs) == 16 and damaged.jpegs == intact.jpegs  # All the frames.
  assert damaged.short is None and damaged.end == intact.end
  _check_gap(damaged.waveform, intact.waveform, 0.0)
  # After the gap, in time with the tone written: FFmpeg's stereo → mono is (L + R) / √2, and
  # the AC-3 encoder's 256-sample delay is in the sound.
  t = np.arange(len(damaged.waveform)) / RATE
  after = (t > LOST + PACKET + 0.01) & (t < 1.5)
  tone = 0.5 * math.sqrt(2) * np.sin(2 * np.pi * 440 * (t[after] - 256 / 48000))
  np.testing.assert_allclose(damaged.waveform[after], tone, atol=0.05)
  # A clip starting after a seek has its gap at the same time of the file.
  _check_gap(_read(files / 'damaged.avi', 0.5, 1.2).waveform,
             _read(files / 'intact.avi', 0.5, 1.2).waveform, 0.5)


def test_a_file_ending_before_the_clip_gives_a_short_clip_or_none(files):
  # Where the cut file's frames end, by PyAV on its own: the last lasts 1/25 s.
  with av.open(str(files / 'cut.avi')) as container:
    last = [f.pts * f.time_base for f in container.decode(video=0)][-1]
  stored = math.ceil((last + fractions.Fraction(1, 25)) * 10)  # Frames at k/10 s before it.
  assert 4 <= stored <= 7  # Less than half the clip read to the end, more than a fifth.
  clip = _read(files / 'cut.avi', 0.0, 1.0)
  assert len(clip.jpegs) == stored and clip.short == f'short: {stored} of 10 frames'
  assert clip.end == pytest.approx(stored / 10)  # Where the frames end.
  assert len(clip.waveform) <= _at(stored / 10)  # Not past the frames.
  # To the end of the file: the AVI's header says 40 frames at 25 fps, 16 at 10 fps.
  with pytest.raises(media.MediaError, match=f'^short: {stored} of 16 frames, '
                     f'{stored / 16:.2f} of the clip, under min_clip_fraction 0.5$'):
    _read(files / 'cut.avi')
  assert _read(files / 'cut.avi', min_clip_fraction=0.2).short == f'short: {stored} of 16 frames'
  # A whole file, shorter than the clip listed; the same file read to its end is not short.
  clip = _read(files / 'intact.avi', 0.0, 3.0)
  assert (len(clip.jpegs), clip.short, clip.end) == (16, 'short: 16 of 30 frames', 1.6)
  assert _read(files / 'intact.avi').short is None
  assert _read(files / 'intact.avi', 0.0, 1.65).short is None  # 16 of 17: within a frame.
  with pytest.raises(media.MediaError, match='0.53 of the clip, under min_clip_fraction 0.6'):
    _read(files / 'intact.avi', 0.0, 3.0, min_clip_fraction=0.6)
  # An audio-only file of 1.6 s, in seconds.
  clip = _read(files / 'bird.wav', 0.0, 3.0)
  assert (clip.short, clip.end, len(clip.waveform)) == ('short: 1.6 of 3 s', 1.6, _at(1.6))
  assert _read(files / 'bird.wav', 0.0, 1.6).short is None


def test_a_video_without_decodable_audio_is_kept_unless_audio_is_required(files):
  mute = _read(files / 'mute.avi')
  assert len(mute.jpegs) == 16 and mute.waveform is None and mute.packets_skipped >= 1
  with pytest.raises(media.MediaError, match='^no decodable audio between 0.0 and .* s '
                     r'\(\d+ packets? skipped, the first: InvalidDataError'):
    _read(files / 'mute.avi', require_audio=True)
  with pytest.raises(media.MediaError, match='^no audio stream$'):
    _read(files / 'silent.mp4', require_audio=True)


def test_a_clip_whose_frames_do_not_decode_is_skipped_not_filled_with_a_later_frame(
    files, monkeypatch):
  with pytest.raises(media.MediaError, match='no decodable frame between 0.0 and 0.5 s '
                     r'\(20 packets skipped'):
    _read(files / 'headless.avi', 0.0, 0.5)
  assert len(_read(files / 'headless.avi', 0.9, 1.4).jpegs) == 5
  # Any error of one file is its reason, never the end of the conversion (PyAV raises
  # ValueError when an audio stream's sample rate changes midway).
  spec = media.ClipSpec(name='x', path=str(files / 'intact.avi'), start=0.0, end=None)
  monkeypatch.setattr(media, 'read_audio', lambda *a, **k: (_ for _ in ()).throw(
      ValueError('Frame does not match AudioResampler setup.')))
  assert media.read_clip_or_reason(spec, **OPTIONS) == (
      'ValueError: Frame does not match AudioResampler setup.')


def test_decoded_audio_beyond_one_is_stored_as_decoded(files):
  with av.open(str(files / 'peaks.mp4')) as container:
    peak = max(np.abs(f.to_ndarray()).max() for f in container.decode(audio=0))
  assert peak > 1.2  # What MP3's decoder gives back of a 0.95 square wave.
  assert np.abs(_read(files / 'peaks.mp4').waveform).max() == pytest.approx(peak, rel=1e-6)
  assert np.abs(_read(files / 'peaks.mp4', sample_rate=8000).waveform).max() > 1.1  # Resampled.


def test_the_converter_stores_damaged_and_short_clips(files, tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  spec = lambda name, end=None, file=None: media.ClipSpec(
      name=name, path=str(files / (file or name)), start=0.0, end=end)
  specs = [spec('damaged.avi'), spec('cut.avi', 1.0), spec('cut to its end', file='cut.avi'),
           spec('silent.mp4')]
  out = str(tmp_path / 'out')
  report = convert.convert(specs, out, name='train', num_shards=1, progress=False,
                           require_audio=True, fps=10.0, short_side=32, sample_rate=RATE)
  assert report['written'] == 2
  reasons = dict(report['skipped'])
  assert reasons['cut to its end'].endswith('of the clip, under min_clip_fraction 0.5')
  assert reasons['silent.mp4'] == 'MediaError: no audio stream'
  records = {}
  for record in tf.data.TFRecordDataset(f'{out}/train-00000-of-00001').as_numpy_iterator():
    example = tf.train.SequenceExample.FromString(record)
    records[example.context.feature[fmt.FILENAME].bytes_list.value[0].decode()] = example
  frames = lambda name: len(records[name].feature_lists.feature_list[fmt.IMAGE].feature)
  end = lambda name: records[name].context.feature[fmt.END_US].int64_list.value[0]
  waveform = np.array(records['damaged.avi'].feature_lists.feature_list[fmt.WAVEFORM]
                      .feature[0].float_list.value)
  assert frames('damaged.avi') == 16 and len(waveform) == len(_read(files / 'intact.avi').waveform)
  np.testing.assert_array_equal(waveform[_at(LOST + EDGE):_at(LOST + PACKET - EDGE)], 0)
  short = _read(files / 'cut.avi', 0.0, 1.0)
  assert frames('cut.avi') == len(short.jpegs) and end('cut.avi') == round(short.end * 1e6)

  with pytest.raises(clip_records.ConversionError, match='min_clip_fraction 1.5 is not a fraction'):
    convert.convert(specs, out, name='x', num_shards=1, min_clip_fraction=1.5)
  with pytest.raises(clip_records.ConversionError, match='require_audio asks for the audio'):
    convert.convert(specs, out, name='x', num_shards=1, require_audio=True, audio=False)
  text = convert.format_report({**report, 'short': [('cut.avi', short.short)],
                                'packets_skipped': [('damaged.avi', 1), ('b.avi', 2)]}, out,
                               'train')
  assert f'stored 1 short clips (the file ends before the clip):\n  cut.avi: {short.short}' in text
  assert ('skipped undecodable packets in 2 clips (audio: silence there), packets by clip:\n'
          '  damaged.avi: 1\n  b.avi: 2' in text)


def test_the_command_line_passes_the_new_flags(files, tmp_path):
  (tmp_path / 'clips.csv').write_text('damaged.avi,,\ncut.avi,0,1\nsilent.mp4,,\n')
  run = subprocess.run(
      [sys.executable, '-m', 'mmv.ingest.convert', f'--input_csv={tmp_path / "clips.csv"}',
       f'--video_root={files}', f'--output_dir={tmp_path / "out"}', '--num_shards=1',
       '--fps=10', '--short_side=32', '--sample_rate=16000', '--num_workers=1',
       '--min_clip_fraction=0.9', '--require_audio'],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr
  assert 'wrote 1 clips' in run.stdout
  assert 'cut.avi: MediaError: short: ' in run.stdout
  assert 'of the clip, under min_clip_fraction 0.9' in run.stdout
  assert 'silent.mp4: MediaError: no audio stream' in run.stdout
