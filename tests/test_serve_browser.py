"""The web page in a real browser: `python -m mmv.serve` launched on an index of two long
generated videos (made by mmv.embed with a checkpoint), headless Chromium (Debian's `chromium`,
driven by Playwright pointed at it; `make test` installs it) loads the page, types a sentence,
and sees first the moment the search API ranks first; a screenshot is saved under the test's
tmp dir. An upload through the server gets the API's results for that file."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from mmv import embed as embed_cli
from mmv import index_model
from mmv import moments
from tests import conftest
from tests import long_videos

pytestmark = pytest.mark.slow  # Launches the server (and a browser).

QUERY = 'a red circle moves left'
CHROMIUM = shutil.which('chromium')


@pytest.fixture(scope='module')
def index_dir(data_dir, tmp_path_factory):
  """An index (hop 1 s) of two 12 s videos, each with synthetic-dataset events pasted in."""
  workdir = conftest.initialised_run(conftest.small_config(data_dir),
                                     str(tmp_path_factory.mktemp('run')), 2)
  videos = tmp_path_factory.mktemp('videos')
  events = [[(3, long_videos.event(1, 'red', 'circle', 'left'))],
            [(6, long_videos.event(2, 'blue', 'square', 'right'))]]
  for k, pasted in enumerate(events):
    frames, wave = long_videos.compose(12, pasted, seed=k)
    long_videos.write(str(videos / f'long{k}.mp4'), frames, wave, size=64)
  loaded, protocol = index_model.load(workdir)
  specs, _ = embed_cli.list_inputs(str(videos))
  index = str(tmp_path_factory.mktemp('index') / 'index')
  report = embed_cli.build_index(loaded, protocol, specs, index, hop=1.0, progress=False)
  assert report['new'] == 2 and not report['unreadable']
  return index


@pytest.fixture(scope='module')
def api_index(index_dir):
  """The index opened by the search API in this process, once for the tests' expected results
  (its model loaded once)."""
  return moments.open_index(index_dir)


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.fixture(scope='module')
def server(index_dir):
  """The URL of `python -m mmv.serve` on the index (stopped after the module's tests)."""
  port = _free_port()
  process = subprocess.Popen(
      [sys.executable, '-m', 'mmv.serve', '--index', index_dir, '--port', str(port)],
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  url = f'http://127.0.0.1:{port}'
  try:
    deadline = time.time() + 300
    while True:
      try:
        urllib.request.urlopen(url + '/', timeout=5)
        break
      except OSError:
        if process.poll() is not None or time.time() > deadline:
          raise AssertionError(f'the server did not start: {process.stdout.read()}')
        time.sleep(1)
    yield url
  finally:
    process.terminate()
    process.wait(timeout=30)


def test_the_server_binds_loopback_only(server):
  port = int(server.rsplit(':', 1)[1])
  with open('/proc/net/tcp') as f:
    listening = [line.split()[1] for line in f.readlines()[1:] if line.split()[3] == '0A']
  assert f'0100007F:{port:04X}' in listening  # 127.0.0.1:port, in /proc's notation.
  assert f'00000000:{port:04X}' not in listening  # Not 0.0.0.0.


@pytest.mark.skipif(CHROMIUM is None, reason='no `chromium` on PATH (Debian: apt-get install '
                    'chromium; `make test` installs it when it can): the browser test did not '
                    'run')
def test_a_browser_types_a_sentence_and_sees_the_apis_first_moment_first(
    server, api_index, tmp_path):
  playwright = pytest.importorskip('playwright.sync_api')
  expected = moments.search(api_index, text=QUERY, top_k=12)[0]
  with playwright.sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, args=['--no-sandbox'])
    try:
      page = browser.new_page(viewport={'width': 1100, 'height': 800})
      page.goto(server + '/')
      page.fill('#q', QUERY)
      page.click('#go')
      page.wait_for_selector('#results .hit')
      first = page.locator('#results .hit').first
      assert first.get_attribute('data-file') == expected['file']
      assert float(first.get_attribute('data-start')) == pytest.approx(expected['start'])
      assert first.get_attribute('data-rank') == '1'
      video = first.locator('video')
      assert video.get_attribute('src').endswith(
          f'#t={expected["start"]:.3f},{expected["end"]:.3f}')
      # The thumbnail (the video's poster) loads: a JPEG the browser decodes.
      width = page.evaluate('''async (src) => { const img = new Image(); img.src = src;
          await img.decode(); return img.naturalWidth; }''', video.get_attribute('poster'))
      assert width > 0
      # The video plays from the moment's start.
      page.evaluate('''(v) => { v.muted = true; return v.play(); }''',
                    video.element_handle())
      page.wait_for_function('(v) => v.currentTime > 0 && v.readyState >= 2',
                             arg=video.element_handle(), timeout=20000)
      assert page.evaluate('(v) => v.currentTime', video.element_handle()) >= (
          expected['start'] - 0.5)
      shot = tmp_path / 'serve.png'
      page.screenshot(path=str(shot), full_page=True)
      print(f'screenshot: {shot}')
      assert shot.stat().st_size > 10_000
    finally:
      browser.close()


def test_an_uploaded_clip_gets_the_apis_look_alike_moments(server, api_index, tmp_path):
  clip = tmp_path / 'clip.mp4'
  frames, wave = long_videos.compose(3, [(0, long_videos.event(1, 'red', 'circle', 'left'))])
  long_videos.write(str(clip), frames, wave, size=64)
  boundary = 'mmvtestboundary'
  body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="clip.mp4"'
          f'\r\nContent-Type: video/mp4\r\n\r\n').encode() + clip.read_bytes() + (
              f'\r\n--{boundary}--\r\n').encode()
  request = urllib.request.Request(server + '/api/search?top_k=5', data=body, headers={
      'Content-Type': f'multipart/form-data; boundary={boundary}'})
  with urllib.request.urlopen(request, timeout=120) as response:
    found = json.load(response)
  expected = moments.search(api_index, video_file=str(clip), top_k=5)
  assert [(r['file'], r['start']) for r in found] == [(r['file'], r['start']) for r in expected]
  np.testing.assert_allclose([r['score'] for r in found], [r['score'] for r in expected],
                             atol=1e-3)
