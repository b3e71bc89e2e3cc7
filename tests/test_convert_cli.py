"""The converter's command line with bad input: a conversion that writes nothing, existing
shards, bad CSV times, a failure half-way; where the progress bar goes."""

import io
import os
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf

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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPTIONS = dict(fps=10.0, short_side=32, sample_rate=16000)
FLAGS = ['--fps=10', '--short_side=32', '--sample_rate=16000', '--num_workers=1']


@pytest.fixture(scope='module')
def media_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp('media')
  media_files.write_video(str(d / 'talk.mp4'), video_codec='mpeg4', audio_codec='aac')
  media_files.write_video(str(d / 'street.mp4'), video_codec='mpeg4')
  return d


@pytest.fixture
def dataset(media_dir, tmp_path):
  """A good two-clip dataset in two shards, with its labels.txt and vocab.txt."""
  out = tmp_path / 'out'
  specs = [_spec(media_dir, 'talk.mp4', 0.0, 1.0, 'dog', 'a dog'),
           _spec(media_dir, 'street.mp4', 0.5, None, 'cat', 'a cat')]
  report = convert.convert(specs, str(out), name='train', num_shards=2, progress=False,
                           **OPTIONS)
  assert report['written'] == 2
  return out


def _spec(media_dir, name, start, end, label, caption):
  return media.ClipSpec(name=name, path=str(media_dir / name), start=start, end=end,
                        labels=(label,), captions=(caption,))


def _files(directory):
  """{name: bytes} of every file, hidden ones (temporary names, staging) included."""
  return {os.path.relpath(os.path.join(parent, name), directory):
          open(os.path.join(parent, name), 'rb').read()
          for parent, _, names in os.walk(directory) for name in names}


def _args(csv_path, media_dir, out, *extra):
  return [f'--input_csv={csv_path}', f'--video_root={media_dir}', f'--output_dir={out}',
          '--name=train', '--num_shards=2', *FLAGS, *extra]


def _run(csv_path, media_dir, out, *extra):
  """The command launched: for its exit status and what reaches stderr."""
  return subprocess.run([sys.executable, '-m', 'mmv.ingest.convert',
                         *_args(csv_path, media_dir, out, *extra)],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)


def _names(out, name):
  return [tf.train.SequenceExample.FromString(r).context.feature[fmt.FILENAME].bytes_list.value[0]
          for path in sorted(tf.io.gfile.glob(os.path.join(str(out), f'{name}-*-of-*')))
          for r in tf.data.TFRecordDataset(path).as_numpy_iterator()]


@pytest.mark.parametrize('content', ['', 'video_path,start,end,label\n', 'gone.mp4,0,1,dog\n'
                                     'lost.mp4,0,1,cat,a lost cat\n'],
                         ids=['empty', 'header_only', 'all_missing'])
def test_a_conversion_that_writes_no_clip_fails_and_changes_nothing(
    content, dataset, media_dir, tmp_path):
  before = _files(dataset)
  (tmp_path / 'new.csv').write_text(content)
  # Even with --overwrite: nothing written, nothing replaced.
  result = _run(tmp_path / 'new.csv', media_dir, dataset, '--overwrite')
  assert result.returncode == 1, result.stdout + result.stderr[-2000:]
  assert 'no clip to write' in result.stderr and 'nothing was changed' in result.stderr
  assert 'Traceback' not in result.stderr
  if 'gone' in content:
    assert 'gone.mp4: FileNotFoundError' in result.stderr
  assert _files(dataset) == before
  # Into a new directory: no shards, no labels.txt, no vocab.txt.
  fresh = tmp_path / 'fresh'
  assert _run(tmp_path / 'new.csv', media_dir, fresh).returncode == 1
  assert not fresh.exists()


def test_existing_shards_are_replaced_only_with_overwrite(dataset, media_dir, tmp_path):
  before = _files(dataset)
  # Half the files missing: without --overwrite, refused before reading anything.
  (tmp_path / 'half.csv').write_text('talk.mp4,0,1,dog\ngone.mp4,0,1,cat\n')
  # The command's main in this process (tests/cli_in_process; checking for shards imports
  # TensorFlow, 3 CPU-s in a launched one): SystemExit with the message is what a launched one
  # exits with, status 1 and the message on stderr without a traceback, as the test above sees.
  with pytest.raises(SystemExit) as exited:
    cli_in_process.run('mmv.ingest.convert', _args(tmp_path / 'half.csv', media_dir, dataset),
                       known_only=True)
  assert isinstance(exited.value.code, str), exited.value.code
  assert exited.value.code.startswith('mmv.ingest.convert: ')
  assert 'already holds train shards' in exited.value.code
  assert '--overwrite' in exited.value.code
  assert _files(dataset) == before
  # Another shard count is the same dataset: refused too.
  specs, _ = clip_lists.read_csv(str(tmp_path / 'half.csv'), str(media_dir))
  with pytest.raises(clip_records.ConversionError, match='already holds train shards'):
    convert.convert(specs, str(dataset), name='train', num_shards=3, progress=False, **OPTIONS)
  assert _files(dataset) == before
  # With overwrite: the new set, of another shard count, replaces the old one entirely.
  report = convert.convert(specs, str(dataset), name='train', num_shards=3, progress=False,
                           overwrite=True, **OPTIONS)
  assert report['written'] == 1
  assert sorted(os.listdir(dataset)) == ['labels.txt', 'train-00000-of-00003',
                                         'train-00001-of-00003', 'train-00002-of-00003',
                                         'vocab.txt']
  assert _names(dataset, 'train') == [b'talk.mp4']


def test_a_failure_half_way_leaves_the_old_dataset(dataset, media_dir, tmp_path, monkeypatch):
  before = _files(dataset)
  specs = [_spec(media_dir, 'talk.mp4', 0.0, 1.0, 'bird', 'a bird'),
           _spec(media_dir, 'street.mp4', 0.0, 1.0, 'bird', 'a bird')]
  calls = []
  make_example = clip_records.make_example

  def failing(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
      raise OSError('disk full')
    return make_example(*args, **kwargs)

  monkeypatch.setattr(clip_records, 'make_example', failing)
  os.remove(dataset / 'labels.txt')  # So that the conversion would write a new map.
  del before['labels.txt']
  with pytest.raises(OSError, match='disk full'):
    convert.convert(specs, str(dataset), name='train', num_shards=2, progress=False,
                    overwrite=True, **OPTIONS)
  assert len(calls) == 2 and _files(dataset) == before  # No temporary file left either.


@pytest.mark.parametrize('num_shards', [2, 3])
def test_a_replacement_cut_short_at_any_point_shows_one_set_and_a_rerun_finishes_it(
    num_shards, dataset, media_dir, tmp_path):
  """--overwrite with the same or another shard count, stopped at each file operation in the
  directory (as a killed process): it never shows two sets, nor a set of old and new shards,
  and the same call run again gives an uninterrupted conversion's files, no staging left."""
  old = cut_short.shard_sets(str(dataset), 'train')[2]
  specs = [_spec(media_dir, 'talk.mp4', 0.0, 1.0, 'dog', 'a dog barks'),
           _spec(media_dir, 'street.mp4', 0.0, 0.5, 'cat', 'a cat'),
           _spec(media_dir, 'talk.mp4', 0.5, 1.5, 'cat', 'a cat again')]
  replace = lambda out: convert.convert(specs, str(out), name='train', num_shards=num_shards,
                                        progress=False, overwrite=True, write_report=True,
                                        **OPTIONS)
  saved, expected = tmp_path / 'saved', tmp_path / 'expected'
  shutil.copytree(dataset, saved)
  shutil.copytree(dataset, expected)
  report = replace(expected)
  new = cut_short.shard_sets(str(expected), 'train')[num_shards]
  assert old != new and report['written'] == 3
  k, cut = 0, True
  while cut:
    k += 1
    shutil.rmtree(dataset)
    shutil.copytree(saved, dataset)
    with cut_short.cut_at(k, lambda path: path.startswith(str(dataset))) as met:
      try:
        replace(dataset)
      except OSError:
        pass
    cut = met['operations'] >= k
    if cut:
      cut_short.check_one_set(str(dataset), 'train', [old, new])
      replace(dataset)
    assert _files(dataset) == _files(expected), k
  # Cut before each: the manifest's rename, the 2 old shards' removals, the new shards' and the
  # report's renames, the staging directory's removal; then a run not cut.
  assert k == 1 + 2 + num_shards + 1 + 1 + 1


def test_bad_times_are_skipped_and_reported_by_row(dataset, media_dir, tmp_path, capsys):
  (tmp_path / 'times.csv').write_text(
      'video_path,start,end,label,caption\n'
      'talk.mp4,-2,1,dog,before the start\n'
      'talk.mp4,0,nan,dog,not a time\n'
      'talk.mp4,abc,1,dog,not a number\n'
      'talk.mp4,1.2,0.4,dog,inverted\n'
      'talk.mp4,0.2,1.0,cat,a good one\n'
      'gone.mp4,0,1,cat,a missing one\n'
      'talk.mp4,5,6,cat,after the end\n')
  # The command's main in this process (its flags and output as launched; tests/cli_in_process):
  # it writes the shards, so a launched one would import TensorFlow (3 CPU-s) first.
  capsys.readouterr()
  cli_in_process.run('mmv.ingest.convert',
                     _args(tmp_path / 'times.csv', media_dir, dataset, '--overwrite'),
                     known_only=True)
  result = capsys.readouterr()
  assert 'wrote 1 clips to 2 shards' in result.out and 'skipped 6:' in result.out
  csv_path = tmp_path / 'times.csv'
  for row, reason in [(2, 'start -2.0 s is not a time in the file (0 s or later)'),
                      (3, 'end nan s is not a time in the file'),
                      (4, "start 'abc' is not a number of seconds"),
                      (5, 'end 0.4 s is not after start 1.2 s')]:
    assert f'  {csv_path} row {row} (talk.mp4): {reason}\n' in result.out
  assert 'gone.mp4: FileNotFoundError' in result.out
  assert result.out.count('outside the file') == 1  # Only the clip after the file's end.
  assert _names(dataset, 'train') == [b'talk.mp4']
  # Written with the shards: labels.txt and vocab.txt of the first conversion are kept.
  assert (dataset / 'labels.txt').read_text() == 'cat\ndog\n'
  # stderr is no terminal here, as a log file would be: no progress bar in it.
  assert 'clip/s' not in result.err and '100%' not in result.err


def test_the_progress_bar_goes_to_a_terminal_only(media_dir, tmp_path, monkeypatch):
  class Terminal(io.StringIO):

    def isatty(self):
      return True

  specs = [_spec(media_dir, 'talk.mp4', 0.0, 0.5, 'dog', 'a dog')]
  for stream, shows in ((Terminal(), True), (io.StringIO(), False)):
    monkeypatch.setattr(sys, 'stderr', stream)
    convert.convert(specs, str(tmp_path / str(shows)), name='train', num_shards=1, **OPTIONS)
    assert ('1/1' in stream.getvalue()) == shows, stream.getvalue()
