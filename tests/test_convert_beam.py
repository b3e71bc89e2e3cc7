"""The converter on Apache Beam (DirectRunner) against the local path, on real media files made
with PyAV: the same files byte for byte, a resumed job on URLs, a job that writes nothing; the
stable shard assignment of both paths."""

import json
import os
import shutil
import sys

import pytest
import tensorflow as tf

import mmv.ingest
from mmv.ingest import clip_lists
from mmv.ingest import clip_records
from mmv.ingest import convert
from mmv.data import format as fmt
from mmv.ingest import media
from tests import cli_in_process
from tests import cut_short
from tests import media_files

# Launches processes, converts media or trains: not in `make test-fast`.
pytestmark = pytest.mark.slow

OPTIONS = dict(fps=10.0, short_side=32, sample_rate=16000)
FLAGS = ['--fps=10', '--short_side=32', '--sample_rate=16000']
# Repeated words, so that the vocabulary's order (count, then name) is exercised; a bad row.
CSV = """video_path,start,end,label,caption
talk.mp4,0.4,1.2,dog,a dog barks
silent.mp4,,,cat;dog,"a cat, then a dog"
missing.mp4,0,1,cat,a lost cat
broken.mp4,0,1,cat,
talk.mp4,abc,1,dog,not a time
talk.mp4,0,0.5,bird,the bird and a dog
silent.mp4,0.2,0.6,cat,
"""


@pytest.fixture(scope='module')
def media_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp('media')
  media_files.write_video(str(d / 'talk.mp4'), video_codec='libx264', audio_codec='aac')
  media_files.write_video(str(d / 'silent.mp4'), video_codec='mpeg4')
  (d / 'broken.mp4').write_bytes(b'not a video' * 100)
  (d / 'train.csv').write_text(CSV)
  narration = {'talk': {'start': [1.0, 0.1, 0.5], 'end': [1.4, 0.4, 0.9],
                        'text': ['the dog', 'a dog', 'the cat']},
               'silent': {'start': [0.0, 0.8], 'end': [0.5, 1.2], 'text': ['a cat', 'a cat']},
               'gone': {'start': [0.0], 'end': [1.0], 'text': ['lost']}}
  (d / 'narration.json').write_text(json.dumps(narration))
  return d


@pytest.fixture
def beam():
  return pytest.importorskip('apache_beam')


def _files(directory):
  """{name: bytes} of every file, hidden ones (temporary and staging) included."""
  return {os.path.relpath(os.path.join(dirpath, name), directory):
          open(os.path.join(dirpath, name), 'rb').read()
          for dirpath, _, names in os.walk(directory) for name in names}


def _clips(path):
  """(file name, start µs) of the records of a shard, in order."""
  context = lambda r: tf.train.SequenceExample.FromString(r).context.feature
  return [(c[fmt.FILENAME].bytes_list.value[0], c[fmt.START_US].int64_list.value[0])
          for c in map(context, tf.data.TFRecordDataset(path).as_numpy_iterator())]


def test_the_command_line_on_beam_writes_the_local_files_byte_for_byte(beam, media_dir, tmp_path,
                                                                      capsys):
  del beam
  local = tmp_path / 'local'
  specs, rejected = clip_lists.read_csv(str(media_dir / 'train.csv'), str(media_dir))
  report = convert.convert(specs, str(local), name='train', num_shards=3, skipped=rejected,
                           progress=False, write_report=True, **OPTIONS)
  assert report['written'] == 4 and len(report['skipped']) == 3
  on_beam = tmp_path / 'beam'
  # The command's main in this process (its flags and output as launched; tests/cli_in_process):
  # Beam's 2 workers are processes still.
  capsys.readouterr()
  cli_in_process.run('mmv.ingest.convert', [
      f'--input_csv={media_dir / "train.csv"}', f'--video_root={media_dir}',
      f'--output_dir={on_beam}', '--name=train', '--num_shards=3', *FLAGS,
      '--runner=DirectRunner', '--direct_num_workers=2',
      '--direct_running_mode=multi_processing'], known_only=True)
  out = capsys.readouterr().out
  assert 'wrote 4 clips to 3 shards' in out and 'skipped 3:' in out
  assert 'missing.mp4: FileNotFoundError' in out
  # Shards, labels.txt, vocab.txt and the report: the same bytes; no staging directory left.
  assert sorted(_files(on_beam)) == ['labels.txt', 'train-00000-of-00003',
                                     'train-00001-of-00003', 'train-00002-of-00003',
                                     'train.report.json', 'vocab.txt']
  assert _files(on_beam) == _files(local)
  assert (local / 'labels.txt').read_text() == 'bird\ncat\ndog\n'
  # The clips' captions (not the rejected row's): 'a' 4 times, 'dog' 3, 'cat' 2, then one
  # each in name order.
  assert (local / 'vocab.txt').read_text().split() == [
      'a', 'dog', 'cat', 'and', 'barks', 'bird', 'lost', 'the', 'then']
  written = json.loads((local / 'train.report.json').read_text())
  assert written['written'] == 4 and [s[0] for s in written['skipped']] == [
      f'{media_dir / "train.csv"} row 6 (talk.mp4)', 'missing.mp4', 'broken.mp4']


def test_a_clip_keeps_its_shard_whatever_the_order_of_the_input(media_dir, tmp_path):
  """Round-robin would move clips when rows move; the hash of the row does not, and a shard
  keeps the input's order."""
  specs, _ = clip_lists.read_csv(str(media_dir / 'train.csv'), str(media_dir))
  shards = {}
  for order, rows in (('forward', specs), ('reverse', specs[::-1])):
    convert.convert(rows, str(tmp_path / order), name='train', num_shards=3, progress=False,
                    **OPTIONS)
    shards[order] = [_clips(tmp_path / order / fmt.shard_name('train', i, 3)) for i in range(3)]
  assert sum(map(len, shards['forward'])) == 4
  assert shards['reverse'] == [clips[::-1] for clips in shards['forward']]


class _FailingSecond:
  """A shard writer whose second shard fails (a worker lost while writing): the count lives in
  the pipeline's copy of it, which the in-process runner keeps for the stage."""

  def __init__(self, write):
    self.write, self.calls = write, 0

  def __call__(self, group, **kwargs):
    self.calls += 1
    if self.calls == 2:
      raise OSError('worker lost')
    return self.write(group, **kwargs)


def _url_files(url):
  """{name: bytes} of every file under a URL, hidden ones included."""
  return {os.path.relpath(os.path.join(d, name), url): tf.io.gfile.GFile(os.path.join(d, name),
                                                                        'rb').read()
          for d, _, names in tf.io.gfile.walk(url) for name in names}


def test_a_failed_beam_job_on_urls_resumes_from_its_complete_shards(beam, media_dir, tmp_path,
                                                                    monkeypatch):
  """Inputs and output at URLs (TensorFlow's ram://, as gs:// on Dataflow): videos are copied to
  the worker, files written through tf.io.gfile."""
  from mmv.ingest import convert_beam  # pylint: disable=g-import-not-at-top
  del beam
  local = tmp_path / 'local'
  specs = clip_lists.read_narration(str(media_dir / 'narration.json'), str(media_dir),
                                 min_clip_seconds=0.6, num_captions=2)
  convert.convert(specs, str(local), name='train', num_shards=4, progress=False,
                  write_report=True, **OPTIONS)
  url = f'ram://{tmp_path.name}'
  for name in ('narration.json', 'talk.mp4', 'silent.mp4'):
    tf.io.gfile.copy(str(media_dir / name), f'{url}/in/{name}')
  out = f'{url}/out'
  with tf.io.gfile.GFile(f'{out}/train-00000-of-00002', 'w') as f:
    f.write('an old set')
  kwargs = dict(name='train', num_shards=4, narration_json=f'{url}/in/narration.json',
                video_root=f'{url}/in', min_clip_seconds=0.6, num_captions=2,
                overwrite=True, beam_args=['--runner=DirectRunner'], **OPTIONS)
  write = convert_beam._write_shard  # pylint: disable=protected-access
  monkeypatch.setattr(convert_beam, '_write_shard', _FailingSecond(write))
  with pytest.raises(Exception, match='worker lost'):
    convert_beam.run(out, **kwargs)
  # The old set is untouched; the shard written before the failure waits in staging.
  staging, = [name for name in tf.io.gfile.listdir(out) if name.startswith('.train.beam-')]
  assert sorted(tf.io.gfile.listdir(out)) == [staging, 'train-00000-of-00002']
  complete = {i for i in range(4) if tf.io.gfile.exists(
      f'{out}/{staging}/{fmt.shard_name("train", i, 4)}.json')}
  assert len(complete) == 1
  monkeypatch.setattr(convert_beam, '_write_shard', write)
  read, decoded = media.read_clip_or_reason, []
  monkeypatch.setattr(media, 'read_clip_or_reason',
                      lambda spec, **o: (decoded.append((spec.name, spec.start)),
                                         read(spec, **o))[1])
  report = convert_beam.run(out, **kwargs)
  # Only the clips of the unfinished shards were decoded again; the result is the local one.
  assert sorted(decoded) == sorted((s.name, s.start) for s in specs
                                   if clip_records.shard_of(s, 4) not in complete)
  assert report['written'] == 5 and report['skipped'] == [('gone', 'MediaError: no such file')]
  assert _url_files(out) == _files(local)


def _old_set(directory):
  """Two shards of an earlier conversion, for a conversion of 3 to replace (--overwrite)."""
  directory.mkdir()
  for i in range(2):
    with tf.io.TFRecordWriter(str(directory / fmt.shard_name('train', i, 2))) as w:
      w.write(f'old record {i}'.encode())
  return cut_short.shard_sets(str(directory), 'train')[2]


@pytest.mark.parametrize('replace', [False, True], ids=['new', 'overwrite'])
def test_a_beam_move_cut_short_at_any_point_is_finished_by_a_rerun(beam, replace, media_dir,
                                                                    tmp_path):
  """The launcher's move (the old set out, then every shard, labels.txt, vocab.txt, the
  report, the staging directory) stopped before any of its steps: the same command run again
  finishes it, and the directory is the local path's, byte for byte, with no staging left."""
  from mmv.ingest import convert_beam  # pylint: disable=g-import-not-at-top
  del beam
  local, out, saved = tmp_path / 'local', tmp_path / 'beam', tmp_path / 'saved'
  old = _old_set(local) if replace else {}
  if replace:
    _old_set(out)
  specs, rejected = clip_lists.read_csv(str(media_dir / 'train.csv'), str(media_dir))
  expected = convert.convert(specs, str(local), name='train', num_shards=3, progress=False,
                             skipped=rejected, overwrite=replace, write_report=True, **OPTIONS)
  new = cut_short.shard_sets(str(local), 'train')[3]
  kwargs = dict(name='train', num_shards=3, input_csv=str(media_dir / 'train.csv'),
                video_root=str(media_dir), overwrite=replace,
                beam_args=['--runner=DirectRunner'], **OPTIONS)
  # The launcher's operations, in OUTPUT_DIR itself (the workers' are in the staging directory).
  launcher = lambda path: os.path.dirname(path) == str(out)
  with cut_short.cut_at(1, launcher), pytest.raises(OSError, match='cut short'):
    convert_beam.run(str(out), **kwargs)  # The pipeline has run: the move is all that is left.
  shutil.copytree(out, saved)
  k, cut = 0, True
  while cut:
    k += 1
    shutil.rmtree(out)
    shutil.copytree(saved, out)
    with cut_short.cut_at(k, launcher) as met:
      try:
        report = convert_beam.run(str(out), **kwargs)
      except OSError:
        pass
    cut = met['operations'] >= k
    if cut:
      cut_short.check_one_set(str(out), 'train', [old, new])
      report = convert_beam.run(str(out), **kwargs)
    assert ({**report, 'shards': [os.path.basename(path) for path in report['shards']]} ==
            {**expected, 'shards': sorted(new)}), k
    assert _files(out) == _files(local), k
  # The old shards, 3 shards, labels.txt, vocab.txt, the report, the staging directory: each
  # cut before, and a last run not cut.
  assert k == len(old) + 3 + 2 + 1 + 1 + 1


def test_a_beam_job_that_writes_no_clip_fails_and_changes_nothing(beam, media_dir, tmp_path):
  from mmv.ingest import convert_beam  # pylint: disable=g-import-not-at-top
  del beam
  (tmp_path / 'gone.csv').write_text('gone.mp4,0,1,dog,a dog\n')
  out = tmp_path / 'out'
  with pytest.raises(clip_records.ConversionError, match='neither the converter nor Beam knows '
                     '--num_shard$'):  # A typo, which Beam alone would drop with a warning.
    convert_beam.run(str(out), name='train', num_shards=2, input_csv=str(tmp_path / 'gone.csv'),
                     beam_args=['--runner=DirectRunner', '--num_shard=3'], **OPTIONS)
  with pytest.raises(clip_records.ConversionError, match='no clip to write: all 1 skipped'):
    convert_beam.run(str(out), name='train', num_shards=2, input_csv=str(tmp_path / 'gone.csv'),
                     video_root=str(media_dir), beam_args=['--runner=DirectRunner'], **OPTIONS)
  assert not out.exists()


def test_runner_without_beam_installed_is_a_one_line_error(monkeypatch):
  monkeypatch.setitem(sys.modules, 'apache_beam', None)  # `import apache_beam` fails.
  monkeypatch.delitem(sys.modules, 'mmv.ingest.convert_beam', raising=False)
  monkeypatch.delattr(mmv.ingest, 'convert_beam', raising=False)
  with pytest.raises(SystemExit, match=r'--runner needs Apache Beam: pip install'):
    convert._beam()  # pylint: disable=protected-access
