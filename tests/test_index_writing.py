"""Writing an index: one run at a time (a second is refused, naming the holder), a dead run's
finished files reused and its stale lock taken over, nothing another run writes deleted; one
file's failure is that file's; the protocol block windows are read with."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from mmv import embed as embed_cli
from mmv import index_files
from mmv import index_model
from mmv import media_inputs
from mmv import window_embed
from tests import cli_in_process
from tests import media_files
from tests import test_inference
# The inference tests' checkpoint (initialised, not trained) and its model, as fixtures.
from tests.test_inference import model, workdir  # pylint: disable=unused-import

# Launches processes and converts media: not in `make test-fast`.
pytestmark = pytest.mark.slow

HOP = 0.5


class Killed(BaseException):
  """The run dies (as by SIGKILL, but in this process: what it leaves is what matters)."""
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def video_files(tmp_path_factory):
  """Four short videos, written once for the module (each test changes a copy)."""
  d = tmp_path_factory.mktemp('videos')
  for k in range(4):
    media_files.write_video(str(d / f'v{k}.mp4'), video_codec='mpeg4', audio_codec='aac')
  return d


@pytest.fixture
def videos(video_files, tmp_path):
  d = tmp_path / 'videos'
  shutil.copytree(video_files, d)
  return d


def _build(model, directory, index, **kwargs):
  specs, _ = embed_cli.list_inputs(str(directory))
  return embed_cli.build_index(model, test_inference.synthetic_protocol(model), specs,
                               str(index), hop=HOP, progress=False, **kwargs)


def _listing(directory):
  return {os.path.relpath(os.path.join(root, n), directory):
          os.stat(os.path.join(root, n)).st_mtime_ns
          for root, _, names in os.walk(directory) for n in names}


def _temporary(path, age):
  with open(path, 'w') as f:
    f.write('being written')
  os.utime(path, (time.time() - age, time.time() - age))


def test_a_second_run_is_refused_naming_the_holder(model, videos, tmp_path):
  index = tmp_path / 'index'
  assert _build(model, videos, index)['new'] == 4
  holder = subprocess.Popen(
      [sys.executable, '-c', 'import sys, time\nfrom mmv import workdir_lock\n'
       'workdir_lock.WorkdirLock(sys.argv[1], option="--output").__enter__()\n'
       'print("held", flush=True)\ntime.sleep(300)\n', str(index)],
      stdout=subprocess.PIPE, text=True, cwd=ROOT)
  try:
    assert holder.stdout.readline().strip() == 'held'
    # The holder is writing: a part and a pending file under their temporary names.
    _temporary(index / 'pending' / '.abc.npz.token1.tmp', 0)
    os.makedirs(index / 'parts' / '.00001.token1.tmp')
    before = _listing(index)
    (videos / 'new.mp4').write_bytes((videos / 'v0.mp4').read_bytes())
    with pytest.raises(embed_cli.IndexRefused,
                       match=f'in use by pid {holder.pid} on host {socket.gethostname()}.*'
                             'another --output'):
      _build(model, videos, index)
    assert _listing(index) == before  # Nothing deleted, nothing written.
  finally:
    holder.kill()
    holder.wait()


def test_a_dead_runs_finished_files_are_reused_and_its_stale_lock_taken_over(
    model, videos, tmp_path, monkeypatch):
  index = tmp_path / 'index'
  outcome = embed_cli._outcome  # pylint: disable=protected-access
  embed_files = window_embed.embed_files
  calls, embedded = [], []

  def dies_at_the_third(*args):
    calls.append(args[0].name)
    if len(calls) == 3:
      raise Killed  # The run stops: its pending files stay.
    return outcome(*args)

  def spy(model, inputs, *args, **kwargs):
    embedded.extend(os.path.basename(path) for path, _ in inputs)
    return embed_files(model, inputs, *args, **kwargs)

  monkeypatch.setattr(embed_cli, '_outcome', dies_at_the_third)
  monkeypatch.setattr(window_embed, 'embed_files', spy)
  with pytest.raises(Killed):
    _build(model, videos, index)
  assert len([n for n in os.listdir(index / 'pending') if n.endswith('.npz')]) == 2
  assert not index_files.part_names(str(index))
  # As if it had been killed: its lock left behind (a pid that is gone, no heartbeat for
  # longer than the staleness), a pending file it was writing (old) and one that another run
  # writes (young, as a run that lost its lock while alive would be).
  gone = subprocess.Popen([sys.executable, '-c', 'pass'])
  gone.wait()
  with open(index / 'lock', 'w') as f:
    json.dump({'pid': gone.pid, 'host': socket.gethostname(), 'since': time.time() - 100,
               'token': 'dead'}, f)
  os.utime(index / 'lock', (time.time() - 100, time.time() - 100))
  _temporary(index / 'pending' / '.old.npz.dead.tmp', 100)
  _temporary(index / 'pending' / '.young.npz.alive.tmp', 0)
  embedded.clear()
  report = _build(model, videos, index, stale_after=10)
  assert report['reused'] == 2 and report['new'] == 2 and report['indexed'] == 4
  assert embedded == ['v2.mp4', 'v3.mp4']  # Only the files the dead run had not finished.
  stored = index_files.read_index(str(index))
  assert sorted(os.path.basename(e['file']) for e in stored.files) == [
      f'v{k}.mp4' for k in range(4)]
  assert sorted(os.listdir(index / 'pending')) == ['.young.npz.alive.tmp']
  assert not os.path.exists(index / 'lock')


def test_one_files_failure_is_its_own_and_is_retried_when_asked(model, videos, tmp_path,
                                                               monkeypatch):
  (videos / 'broken.mp4').write_bytes(b'not a video')
  embed_tasks = window_embed._embed_tasks  # pylint: disable=protected-access
  embed_files = window_embed.embed_files
  tried = []

  def fails_on_v2(m, tasks, *args):
    if any(f.path.endswith('v2.mp4') for f, _ in tasks):
      raise RuntimeError('the decoder crashed')
    return embed_tasks(m, tasks, *args)

  def spy(m, inputs, *args, **kwargs):
    tried.extend(os.path.basename(path) for path, _ in inputs)
    return embed_files(m, inputs, *args, **kwargs)

  # The four files' windows are one pass: it fails, and is tried again file by file.
  monkeypatch.setattr(window_embed, '_embed_tasks', fails_on_v2)
  monkeypatch.setattr(window_embed, 'embed_files', spy)
  index = tmp_path / 'index'
  report = _build(model, videos, index)
  reasons = {u['name']: u['reason'] for u in report['unreadable']}
  assert report['new'] == 3 and set(reasons) == {'broken.mp4', 'v2.mp4'}
  assert reasons['v2.mp4'] == 'RuntimeError: the decoder crashed'
  assert 'InvalidDataError' in reasons['broken.mp4'] or 'Invalid data' in reasons['broken.mp4']
  tried.clear()
  again = _build(model, videos, index)
  assert again['new'] == 0 and again['already'] == 5 and not tried
  # --retry_failed: the fixed file is indexed, the other listed again.
  media_files.write_video(str(videos / 'broken.mp4'), video_codec='mpeg4')
  retried = _build(model, videos, index, retry_failed=True)
  assert sorted(tried) == ['broken.mp4', 'v2.mp4'] and retried['new'] == 1
  stored = index_files.read_index(str(index))
  assert [u['name'] for u in stored.unreadable] == ['v2.mp4']
  assert len(stored.files) == 4 and 'broken.mp4' in {e['name'] for e in stored.files}


def test_windows_are_read_with_the_runs_retrieval_protocol(workdir):
  model, protocol = index_model.load(workdir)
  assert protocol['name'] == 'synthetic'  # The run's data is the synthetic dataset.
  assert window_embed.window_seconds(model.data) == pytest.approx(8 * 2 / 10)
  model, protocol = index_model.load(workdir, protocol='msrvtt')
  # MSRVTT's published protocol: 32 frames at stride 2 from 25 fps, short side 224, crop 224.
  assert (model.data.fps, model.data.num_frames, model.data.frame_stride,
          model.data.min_resize, model.data.crop_size) == (25.0, 32, 2, 224, 224)
  assert protocol == {'name': 'msrvtt', 'fps': 25.0, 'num_frames': 32, 'frame_stride': 2,
                      'min_resize': 224, 'crop_size': 224, 'clip_offsets': 'mmv'}
  assert window_embed.window_seconds(model.data) == pytest.approx(2.56)
  assert model.short_side == 224
  with pytest.raises(ValueError, match="no protocol block 'ucf' with clip settings"):
    index_model.load(workdir, protocol='ucf')


def test_window_starts_cover_the_file():
  assert window_embed.window_starts(10.0, 1.6, 2.0) == [0, 2, 4, 6, 8]
  assert window_embed.window_starts(10.0, 1.6, 3.0) == [0, 3, 6, 8.4]  # One ending at 10 s.
  assert window_embed.window_starts(1.0, 1.6, 0.5) == [0.0]
  assert window_embed.window_starts(5.0, 1.6, 1.0, start=2.0) == [2, 3]
  with pytest.raises(ValueError, match='hop'):
    window_embed.window_starts(5.0, 1.6, 0)
  with pytest.raises(media_inputs.UnreadableInput):
    window_embed.probe(os.devnull)


def test_embed_cli_lists_an_unreadable_file_and_goes_on(workdir, videos, tmp_path, capsys):
  (videos / 'broken.mp4').write_bytes(b'not a video')
  index = tmp_path / 'index'
  # The command's main in this process (its flags and output as launched; tests/cli_in_process).
  capsys.readouterr()
  cli_in_process.run('mmv.embed', ['--workdir', workdir, '--input', videos, '--output', index,
                                   '--hop', '0.5', '--noprogress'])
  out = capsys.readouterr().out
  # 1.6 s files, windows of 1.6 s: one each.
  assert '4 files indexed, 4 new (4 windows of 1.6 s every 0.5 s)' in out
  assert 'protocol synthetic' in out
  assert 'skipped 1 unreadable:\n  broken.mp4: ' in out
  settings = index_files.read_settings(str(index))
  assert settings['protocol']['name'] == 'synthetic' and settings['hop'] == 0.5
  assert settings['model']['checkpoint_mtime'] == os.stat(
      os.path.join(workdir, 'checkpoints', '3')).st_mtime
