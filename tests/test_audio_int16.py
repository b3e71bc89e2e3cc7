"""`--audio_format int16`: the waveform as 16-bit PCM, read back by the pipeline as floats.

Checked against a file made by another tool: a PyAV-written 16-bit WAV, read independently with
Python's `wave` module, converted at its own rate, must come back as the same integers.
"""

import os
import subprocess
import sys
import wave

import numpy as np
import pytest
import tensorflow as tf

from mmv.ingest import clip_lists
from mmv.ingest import clip_records
from mmv.ingest import convert
from mmv.data import example as example_ops
from mmv.data import format as fmt
from mmv.ingest import media
from tests import media_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATE = 44100


@pytest.fixture(scope='module')
def sounds(tmp_path_factory):
  d = tmp_path_factory.mktemp('sounds')
  media_files.write_wav(str(d / 'bird.wav'), rate=RATE)
  media_files.write_video(str(d / 'talk.mp4'), video_codec='libx264', audio_codec='aac')
  (d / 'sounds.csv').write_text('bird.wav,,,bird\ntalk.mp4,0.2,1.4,talk\n')
  return d


def _records(output_dir):
  paths = sorted(tf.io.gfile.glob(os.path.join(output_dir, 'train-*-of-*')))
  return {tf.train.SequenceExample.FromString(r).context.feature[fmt.FILENAME]
          .bytes_list.value[0].decode(): r
          for path in paths for r in tf.data.TFRecordDataset(path).as_numpy_iterator()}


def _pipeline_waveform(record):
  """The waveform as the training/evaluation pipeline parses it (float32)."""
  return example_ops._parse(tf.constant(record), ('audio',))[fmt.WAVEFORM].numpy()  # pylint: disable=protected-access


def _convert(sounds, out, audio_format):
  specs, rejected = clip_lists.read_csv(str(sounds / 'sounds.csv'), str(sounds))
  assert not rejected
  return convert.convert(specs, str(out), name='train', num_shards=1, fps=10.0, short_side=32,
                         sample_rate=RATE, progress=False, audio_format=audio_format)


def test_int16_records_hold_the_wav_files_samples_and_read_back_as_floats(sounds, tmp_path):
  with wave.open(str(sounds / 'bird.wav')) as f:
    assert (f.getsampwidth(), f.getnchannels(), f.getframerate()) == (2, 1, RATE)
    pcm = np.frombuffer(f.readframes(f.getnframes()), '<i2')
  report = _convert(sounds, tmp_path / 'int16', 'int16')
  as_int16 = _records(tmp_path / 'int16')
  _convert(sounds, tmp_path / 'float', 'float')
  as_float = _records(tmp_path / 'float')
  assert report['written'] == 2 and report['audio_clipped'] == []
  stored = tf.train.SequenceExample.FromString(as_int16['bird.wav']).feature_lists.feature_list
  assert fmt.WAVEFORM not in stored  # One format per record.
  stored = np.frombuffer(stored[fmt.WAVEFORM_INT16].feature[0].bytes_list.value[0], '<i2')
  np.testing.assert_array_equal(stored, pcm)  # The file's own samples, bit for bit.
  read = _pipeline_waveform(as_int16['bird.wav'])
  assert read.dtype == np.float32
  np.testing.assert_array_equal(read * 32768.0, pcm.astype(np.float32))
  # The float default: DMVR's float list, the same values (16-bit sources are exact in float).
  np.testing.assert_array_equal(_pipeline_waveform(as_float['bird.wav']), read)
  # A lossy source (AAC): within half a 16-bit step of the float record; half the audio bytes.
  talk_float = _pipeline_waveform(as_float['talk.mp4'])
  talk_int16 = _pipeline_waveform(as_int16['talk.mp4'])
  assert talk_float.shape == talk_int16.shape == (int(1.2 * RATE),)
  assert np.abs(talk_int16 - talk_float).max() <= 0.5 / 32768 + 1e-9
  saved = len(as_float['talk.mp4']) - len(as_int16['talk.mp4'])
  assert saved >= 1.99 * len(talk_float)  # 4 bytes a sample → 2 (and no per-value framing).


def test_samples_beyond_16_bits_are_clipped_and_counted():
  samples = np.array([0.0, 0.5, -1.0, 1.0, 1.5, -2.0, 32767 / 32768], np.float32)
  clip = media.Clip(jpegs=[], waveform=samples, start=0.0, end=1.0)
  spec = media.ClipSpec(name='loud', path='loud.wav', start=0.0, end=1.0)
  record = clip_records.make_example(spec, clip, {}, fps=10.0, sample_rate=8000.0,
                                     audio_format='int16')
  read = _pipeline_waveform(record.SerializeToString())
  np.testing.assert_array_equal(read * 32768, [0, 16384, -32768, 32767, 32767, -32768, 32767])
  assert clip_records.clipped_samples(clip, 'int16') == 3  # 1.0, 1.5 and -2.0.
  assert clip_records.clipped_samples(clip, 'float') == 0
  lines = convert.format_report({'written': 1, 'shards': ['x'], 'labels': [], 'skipped': [],
                                 'audio_clipped': [('loud', 3)]}, '/out', 'train')
  assert 'clipped audio samples beyond [-1, 1) to 16 bits in 1 clips' in lines
  assert '  loud: 3' in lines
  with pytest.raises(clip_records.ConversionError, match="audio_format 'int8' is not one of"):
    clip_records.make_example(spec, clip, {}, fps=10.0, sample_rate=8000.0, audio_format='int8')


def test_the_command_line_takes_audio_format_and_refuses_others(sounds, tmp_path):
  out = tmp_path / 'cli'
  run = lambda fmt_: subprocess.run(
      [sys.executable, '-m', 'mmv.ingest.convert', f'--input_csv={sounds / "sounds.csv"}',
       f'--video_root={sounds}', f'--output_dir={out}', '--num_shards=1', '--short_side=32',
       f'--sample_rate={RATE}', '--num_workers=1', f'--audio_format={fmt_}'],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  bad = run('int8')
  assert bad.returncode != 0 and 'audio_format' in bad.stderr and not out.exists()
  good = run('int16')
  assert good.returncode == 0, good.stderr[-2000:]
  record = _records(out)['bird.wav']
  assert fmt.WAVEFORM_INT16 in tf.train.SequenceExample.FromString(record).feature_lists.feature_list


def test_the_beam_path_writes_the_same_int16_records(sounds, tmp_path):
  convert_beam = pytest.importorskip('mmv.ingest.convert_beam')
  _convert(sounds, tmp_path / 'local', 'int16')
  local = _records(tmp_path / 'local')
  specs, _ = clip_lists.read_csv(str(sounds / 'sounds.csv'), str(sounds))
  options = clip_records.read_options(fps=10.0, short_side=32, sample_rate=RATE)
  for spec in specs:
    (_, (_, kind, payload)), = [
        item for item in convert_beam._decode_video(  # pylint: disable=protected-access
            (spec.path, [(0, spec)]), ['bird', 'talk'], options=options, num_shards=1,
            audio_format='int16') if item[1][1] == 'example']
    assert kind == 'example' and payload == local[spec.name]
