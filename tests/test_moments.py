"""Finding moments in long videos: events pasted at known times into generated long videos are
found by a sentence (the tiny model trained briefly here), by a copy of their clip (look-alike)
or of their sound (sound-alike), at their time to within one hop; dedupe drops the copies and
real re-encodes (PyAV, other resolution and bit rate, MPEG-4 and H.264) of a clip."""

import json
import os

import numpy as np
import pytest

from mmv import embed as embed_cli
from mmv import index_model
from mmv import moments
from mmv import train
from tests import cli_in_process
from tests import conftest
from tests import long_videos

# Trains and converts media: not in `make test-fast`.
pytestmark = pytest.mark.slow

STEPS = 120  # Enough for the small model to tell these events apart by their captions (100
# passed, 50 did not: the two copies of an event were not yet near-duplicates), 0.1 s a step.
HOP = 1.0
A = (1, 'red', 'circle', 'left')
B = (2, 'blue', 'square', 'up')
C = (3, 'green', 'triangle', 'down')
# (file, seconds, [(event, start second)]).
LONG = [('long_a.mp4', 30, [(A, 8.0), (B, 20.0)]), ('long_b.mp4', 24, [(A, 14.0)])]
COPIES_OF_C = ('c.mp4', 'c_small.mp4', 'c_x264.mkv')


@pytest.fixture(scope='module')
def trained(data_dir, tmp_path_factory):
  config = conftest.small_config(data_dir)
  config.train.steps = config.train.checkpoint_every = config.train.log_every = STEPS
  config.optim.warmup_steps = 20
  workdir = str(tmp_path_factory.mktemp('run'))
  train.train(config, workdir)
  return workdir


@pytest.fixture(scope='module')
def collection(tmp_path_factory):
  """(directory of the indexed videos, directory of query files)."""
  videos, queries = tmp_path_factory.mktemp('videos'), tmp_path_factory.mktemp('queries')
  events = {e: long_videos.event(*e) for e in (A, B, C)}
  for seed, (name, seconds, pasted) in enumerate(LONG):
    long_videos.write(str(videos / name), *long_videos.compose(
        seconds, [(start, events[e]) for e, start in pasted], seed=seed + 1))
  long_videos.write(str(videos / 'c.mp4'), *long_videos.compose(4, [(1.0, events[C])], seed=3))
  long_videos.reencode(str(videos / 'c.mp4'), str(videos / 'c_small.mp4'), size=24,
                       bit_rate=60_000)
  long_videos.reencode(str(videos / 'c.mp4'), str(videos / 'c_x264.mkv'), size=56,
                       bit_rate=300_000, codec='libx264')
  long_videos.write(str(queries / 'a.mp4'), *long_videos.compose(2, [(0.0, events[A])], seed=4))
  long_videos.write_wav(str(queries / 'a.wav'), events[A][1])
  return videos, queries


@pytest.fixture(scope='module')
def index(trained, collection, tmp_path_factory):
  model, protocol = index_model.load(trained)
  assert protocol['name'] == 'synthetic'  # A run on the synthetic dataset.
  path = str(tmp_path_factory.mktemp('index') / 'index')
  specs, _ = embed_cli.list_inputs(str(collection[0]))
  report = embed_cli.build_index(model, protocol, specs, path, hop=HOP, progress=False)
  assert report['new'] == 5 and not report['unreadable']
  return moments.open_index(path, model=model)


def _where(hit):
  return os.path.basename(hit['file']), hit['peak']


def _is_at(hit, name, start):
  """The hit is in `name` and its best window starts within one hop of `start`."""
  file, peak = _where(hit)
  return file == name and abs(peak - start) <= HOP and hit['start'] <= start + HOP


def _places(event):
  return [(name, start) for name, _, pasted in LONG for e, start in pasted if e == event]


def test_a_sentence_finds_its_moment_first(index):
  for event in (A, B):
    text = f'{event[1]} {event[2]} moves {event[3]}'
    found = moments.search(index, text=text, top_k=3)
    assert any(_is_at(found[0], *place) for place in _places(event)), (text, found)
    assert [sorted(r) for r in found][0] == sorted(
        ['rank', 'file', 'name', 'start', 'end', 'peak', 'score'])
    assert all(a['score'] >= b['score'] for a, b in zip(found, found[1:]))
  # Event A is in both long files: its two moments are the first two.
  found = moments.search(index, text='red circle moves left', top_k=2)
  assert all(any(_is_at(h, *p) for h in found) for p in _places(A)), found
  # The two copies are near-duplicates: dedupe keeps the better one.
  deduped = moments.search(index, text='red circle moves left', top_k=2, dedupe=0.95)
  assert deduped[0] == {**found[0], 'rank': 1}
  assert not any(_is_at(h, *_where(found[1])) for h in deduped)
  # Files: ranked by their embedding (the mean of their windows'), whole.
  files = moments.search(index, text='blue square moves up', files=True, top_k=5)
  text = index.model.embed_text(['blue square moves up']).vat[0]
  windows = index.window_vectors['vat']
  means = [windows[index.window_file == i].mean(axis=0) for i in range(len(index.files))]
  scores = [float(m @ text / np.linalg.norm(m)) for m in means]
  assert [h['file'] for h in files] == [index.files[i]['file'] for i in np.argsort(scores)[::-1]]
  np.testing.assert_allclose([h['score'] for h in files], sorted(scores)[::-1], atol=1e-4)
  long_a = next(h for h in files if h['file'].endswith('long_a.mp4'))
  assert long_a['start'] == 0 and long_a['end'] == pytest.approx(30, abs=0.1)


def test_look_alike_and_sound_alike_find_the_copies(index, collection):
  queries = collection[1]
  for query in (dict(video_file=str(queries / 'a.mp4')), dict(audio_file=str(queries / 'a.wav'))):
    found = moments.search(index, top_k=2, **query)
    assert all(any(_is_at(h, *p) for h in found) for p in _places(A)), (query, found)
    assert min(h['score'] for h in found) > 0.95
  # Audio against the picture (S_va): a space of its own, still ranked.
  found = moments.search(index, audio_file=str(queries / 'a.wav'), audio_against='video',
                         top_k=3)
  assert len(found) == 3


def test_dedupe_drops_the_query_and_its_reencodes(index, collection):
  query = str(collection[0] / 'c.mp4')
  # The file embedded once for the searches without dedupe (dedupe needs the file: its own
  # embedding is what the copies are near to).
  vector = moments.query_vector(index, video_file=query)
  found = moments.search(index, query=vector, files=True, top_k=5)
  # The file and its re-encodes are the three nearest files.
  assert sorted(os.path.basename(h['file']) for h in found[:3]) == sorted(COPIES_OF_C)
  threshold = 0.98
  deduped = moments.search(index, video_file=query, files=True, top_k=5, dedupe=threshold)
  assert not {os.path.basename(h['file']) for h in deduped} & set(COPIES_OF_C)
  # What is left is every file further than the threshold from the query and from each other
  # (the cosine similarities computed here from the file embeddings).
  vectors = {os.path.basename(e['file']): index.file_vectors['vat'][i]
             for i, e in enumerate(index.files)}
  q = vectors['c.mp4']  # The query is the indexed file itself: same embedding.
  kept = [os.path.basename(h['file']) for h in deduped]
  expected = []
  for h in found:  # Every indexed file, best first.
    name = os.path.basename(h['file'])
    near = [q] + [vectors[k] for k in expected]
    if float(np.max(np.stack(near) @ vectors[name])) < threshold:
      expected.append(name)
  assert kept == expected
  # Moments: the re-encodes' moments are within the threshold of the query's own.
  found = moments.search(index, query=vector, top_k=3)
  assert {os.path.basename(h['file']) for h in found} == set(COPIES_OF_C)
  deduped = moments.search(index, video_file=query, top_k=3, dedupe=threshold)
  assert not {os.path.basename(h['file']) for h in deduped} & set(COPIES_OF_C)


def test_search_cli_prints_json_moments(index, capsys):
  # The command's main in this process (its flags and output as launched; tests/cli_in_process).
  capsys.readouterr()
  cli_in_process.run('mmv.search', ['--index', index.index_dir, '--json', '--top_k', '2',
                                    '--dedupe', '0.95', 'blue square moves up'])
  found = json.loads(capsys.readouterr().out)
  assert isinstance(found, list) and {'file', 'start', 'end', 'score'} <= set(found[0])
  assert _is_at(found[0], *_places(B)[0])
