"""The web page's server (mmv.serve) through Starlette's TestClient, on an index of two real
video files whose window embeddings are made up (a stand-in model embeds the sentences): the
results, the media and thumbnails it serves, and the 4xx of what it must refuse."""

import dataclasses
import io
import os
import types

import numpy as np
from PIL import Image
import pytest
from starlette import testclient

from mmv import moments
from mmv import serve
from tests import long_videos

SECONDS = 6
DIM = 16


def _colour_frames(seconds, colour_at):
  """Frames at long_videos.FPS, each second a flat colour `colour_at(second)`."""
  frames = np.zeros([seconds * long_videos.FPS, 32, 32, 3], np.uint8)
  for s in range(seconds):
    frames[s * long_videos.FPS:(s + 1) * long_videos.FPS] = colour_at(s)
  return frames


class _Model:
  """Embeds a sentence as the unit vector its words name (a stand-in for a trained model)."""

  def __init__(self, vectors):
    self.vectors = vectors

  def embed_text(self, texts):
    return types.SimpleNamespace(vat=np.stack([self.vectors[t] for t in texts]))


@pytest.fixture(scope='module')
def collection(tmp_path_factory):
  root = tmp_path_factory.mktemp('served')
  videos = root / 'videos'
  videos.mkdir()
  files = []
  for k in range(2):
    path = str(videos / f'v{k}.mp4')
    frames = _colour_frames(SECONDS, lambda s, k=k: (40 * s, 200 - 100 * k, 60))
    long_videos.write(path, frames, np.zeros(SECONDS * long_videos.RATE, np.float32),
                      audio=None)
    files.append(path)
  (root / 'secret.txt').write_text('not for the web')
  rng = np.random.default_rng(0)
  windows = rng.standard_normal([2 * SECONDS, DIM]).astype(np.float32)
  windows /= np.linalg.norm(windows, axis=1, keepdims=True)
  window_file = np.repeat([0, 1], SECONDS)
  starts = np.tile(np.arange(SECONDS, dtype=np.float64), 2)
  vectors = {s: windows for s in ('vat', 'va', 'sound')}
  entries = [{'file': f, 'name': os.path.basename(f), 'duration': float(SECONDS),
              'kinds': ['video']} for f in files]
  model = _Model({'green square': windows[SECONDS + 3], 'first': windows[1]})
  index = moments.Index(
      index_dir=str(root / 'index'), model=model, settings={'hop': 1.0}, files=entries,
      file_vectors={s: np.stack([windows[:SECONDS].mean(0), windows[SECONDS:].mean(0)])
                    for s in vectors},
      window_vectors=vectors, window_file=window_file,
      window_times=np.stack([starts, starts + 1.0], 1), unreadable=[])
  return types.SimpleNamespace(root=root, files=files, index=index,
                               app=serve.create_app(serve.Collection(index),
                                                    max_upload_mb=0.5))


@pytest.fixture
def client(collection):
  return testclient.TestClient(collection.app)


def test_a_sentence_finds_its_moment_first_on_the_page_and_in_json(client, collection):
  page = client.get('/', params={'q': 'green square'})
  assert page.status_code == 200
  first = page.text.index('class="hit"')
  assert f'data-rank="1" data-file="{collection.files[1]}" data-start="3"' in page.text[
      first - 20:]
  found = client.get('/api/search', params={'q': 'green square', 'top_k': 3}).json()
  assert len(found) == 3
  assert (found[0]['file'], found[0]['start'], found[0]['end']) == (collection.files[1], 3, 4)
  assert found[0]['score'] == pytest.approx(1.0, abs=1e-4)
  assert client.get('/').status_code == 200  # No query: the forms only.


def test_media_is_the_indexed_file_with_ranges(client, collection):
  data = open(collection.files[0], 'rb').read()
  got = client.get('/media', params={'file': collection.files[0]})
  assert got.status_code == 200 and got.content == data
  part = client.get('/media', params={'file': collection.files[0]},
                    headers={'Range': 'bytes=10-19'})
  assert part.status_code == 206 and part.content == data[10:20]


@pytest.mark.parametrize('second', [0, 3, 5])
def test_thumbnail_is_the_frame_at_the_moments_start(client, collection, second):
  got = client.get('/thumb', params={'file': collection.files[0], 't': second + 0.5})
  assert got.status_code == 200 and got.headers['content-type'] == 'image/jpeg'
  image = np.asarray(Image.open(io.BytesIO(got.content)).convert('RGB'), np.float64)
  expected = (40 * second, 200, 60)  # The colour written at that second (lossy codecs: ~).
  np.testing.assert_allclose(image.mean(axis=(0, 1)), expected, atol=12)


def test_only_the_indexed_files_are_served(client, collection, tmp_path):
  videos = os.path.dirname(collection.files[0])
  refused = [
      os.path.join(videos, '..', 'secret.txt'),  # ../
      os.path.join(videos, '..', 'videos', 'v0.mp4'),  # An indexed file by another path.
      str(collection.root / 'secret.txt'),  # Absolute, not indexed.
      '/etc/passwd', 'v0.mp4', '../../etc/passwd', '',
  ]
  link = os.path.join(videos, 'link.mp4')  # A symlink out, made after indexing.
  os.symlink(str(collection.root / 'secret.txt'), link)
  refused.append(link)
  for path in refused:
    for route in ('/media', '/thumb'):
      got = client.get(route, params={'file': path})
      assert got.status_code == 403, (route, path, got.status_code)
      assert 'not a file of this index' in got.json()['error']
  assert client.get('/media').status_code == 403


def test_an_indexed_file_turned_into_a_symlink_out_is_refused(collection, tmp_path):
  video = tmp_path / 'moved.mp4'
  video.write_bytes(open(collection.files[0], 'rb').read())
  index = dataclasses.replace(
      collection.index, index_dir=str(tmp_path), model=None,
      files=[{'file': str(video), 'name': 'moved.mp4', 'duration': 6.0}])
  client = testclient.TestClient(serve.create_app(serve.Collection(index)))
  assert client.get('/media', params={'file': str(video)}).status_code == 200
  video.unlink()
  os.symlink(str(collection.root / 'secret.txt'), str(video))
  got = client.get('/media', params={'file': str(video)})
  assert got.status_code == 403 and 'symlink' in got.json()['error']


def test_uploads_too_large_not_media_or_missing_get_a_clear_4xx(client):
  big = client.post('/api/search', files={'file': ('big.mp4', b'\0' * (600 * 1024))})
  assert big.status_code == 413 and 'at most' in big.json()['error']
  text = client.post('/api/search', files={'file': ('notes.mp4', b'just some text\n' * 50)})
  assert text.status_code == 415 and 'not a sound or video' in text.json()['error']
  none = client.post('/api/search', data={'against': 'sound'})
  assert none.status_code == 400 and 'no file' in none.json()['error']
  page = client.post('/', files={'file': ('big.wav', b'\0' * (600 * 1024))})
  assert page.status_code == 413 and 'class="error"' in page.text  # The page says why.


def test_bad_parameters_are_400(client, collection):
  assert client.get('/api/search', params={'q': 'first', 'top_k': 'x'}).status_code == 400
  assert client.get('/api/search', params={'q': 'first', 'top_k': 0}).status_code == 400
  assert client.get('/api/search', params={'q': 'first', 'dedupe': 3}).status_code == 400
  assert client.get('/api/search').status_code == 400
  assert client.get('/thumb', params={'file': '/x', 't': 'soon'}).status_code == 403
  assert client.get('/thumb', params={'file': collection.files[0], 't': 'soon'}).status_code == 400
  assert client.get('/thumb', params={'file': collection.files[0]}).status_code == 200  # t=0
