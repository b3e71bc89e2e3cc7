"""The embedding API and its CLIs: a checkpoint's embeddings of files, arrays and sentences equal
what the evaluation pipeline computes for the converted records; an index built, resumed and
searched; a workdir made by the DeepMind importer loads."""

import os
import types

import numpy as np
import pytest

from mmv import benchmarks
from mmv import embed as embed_cli
from mmv import evaluate_protocol
from mmv import index_files
from mmv import index_model
from mmv import inference
from mmv import media_inputs
from mmv import moments
from mmv import search as search_cli
from mmv.ingest import convert
from mmv.evaluators import features as features_lib
from mmv.tools import records_to_videos
from tests import conftest
from tests import test_import_deepmind as release_test

# Launches processes, converts media or trains: not in `make test-fast`.
pytestmark = pytest.mark.slow

NUM_VIDEOS = 6


@pytest.fixture(scope='module')
def workdir(data_dir, tmp_path_factory):
  """A workdir with config.json and a freshly initialised checkpoint at step 3."""
  return conftest.initialised_run(conftest.small_config(data_dir),
                                  str(tmp_path_factory.mktemp('run')), 3)


@pytest.fixture(scope='module')
def model(workdir):
  return inference.load(workdir)


@pytest.fixture(scope='module')
def videos(data_dir, tmp_path_factory):
  """The CSV of NUM_VIDEOS test videos of the synthetic dataset written as files (Matroska)."""
  return records_to_videos.write_split(data_dir, 'test', str(tmp_path_factory.mktemp('videos')),
                                       limit=NUM_VIDEOS)


def _files(listing):
  directory = os.path.dirname(listing)
  return [os.path.join(directory, n) for n in sorted(os.listdir(directory)) if n.endswith('.mkv')]


def test_embeddings_are_the_evaluation_pipelines_features_of_the_converted_record(
    workdir, model, videos, tmp_path):
  assert model.step == 3
  files = _files(videos)[:2]
  got = model.embed_videos(files, clips=2)
  c = model.config
  assert got.features.shape == (2, 2, got.features.shape[-1])
  assert got.va.shape == (2, c.model.va_dim) and got.vat.shape == (2, c.model.vat_dim)
  np.testing.assert_allclose(np.linalg.norm(got.vat, axis=1), 1, rtol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(got.va, axis=1), 1, rtol=1e-5)
  # Two clips of 8 frames at stride 2 (1.6 s) in a 20-frame video at 10 fps: the first at
  # frame 0, the last at frame 20 - 15 (its frames span 15), 0.5 s.
  np.testing.assert_allclose(got.clip_times[0], [[0, 1.6], [0.5, 2.0]], atol=1e-6)

  # The same files converted by the converter and read by the evaluation binary's pipeline.
  specs = [convert.media.ClipSpec(name=f, path=f, start=0.0, end=None) for f in files]
  convert.convert(specs, str(tmp_path), name='test', num_shards=1, fps=c.data.fps,
                  short_side=model.short_side, sample_rate=int(c.data.audio_sample_rate),
                  progress=False)
  bench = benchmarks.get('synthetic')
  prepared = types.SimpleNamespace(fps=c.data.fps, data_dir=str(tmp_path), split='test')
  data = evaluate_protocol.benchmark_data_config(c, bench, prepared)
  data.num_test_clips = 2
  flax_model, variables, mesh = model.checkpoint.restored
  embed = features_lib.make_embed_fn(flax_model, 'video', with_text=False)
  expected, _ = features_lib.extract(data, 'test', embed, variables, mesh, batch_size=8)
  np.testing.assert_allclose(got.features, expected['features'], rtol=1e-5, atol=1e-5)
  # The retrieval protocol's clip average: normalise, average, normalise.
  clips = expected['video'] / np.linalg.norm(expected['video'], axis=-1, keepdims=True)
  mean = clips.mean(axis=1)
  np.testing.assert_allclose(got.vat, mean / np.linalg.norm(mean, axis=-1, keepdims=True),
                             rtol=1e-5, atol=1e-5)

  # Arrays: frames at the model's frame rate, a waveform at its sample rate.
  frames = np.random.default_rng(0).integers(0, 255, (12, 48, 64, 3), np.uint8)
  arrays = model.embed_videos([frames], clips=1)
  assert arrays.features.shape[:2] == (1, 1) and np.isfinite(arrays.vat).all()
  sound = model.embed_audio([np.sin(np.arange(8000, dtype=np.float32) / 5), files[0]])
  assert sound.va.shape == (2, c.model.va_dim) and sound.features.shape[:2] == (2, 4)
  text = model.embed_text(['a red circle moves left', 'something moving up'])
  assert text.vat.shape == (2, c.model.vat_dim) and text.va is None
  np.testing.assert_allclose(np.linalg.norm(text.vat, axis=1), 1, rtol=1e-5)
  with pytest.raises(ValueError, match="'the' has no word left once the stop words"):
    model.embed_text(['the'])
  with pytest.raises(ValueError, match='uint8'):
    model.embed_videos([frames.astype(np.float32)])
  with pytest.raises(media_inputs.UnreadableInput, match='no such file'):
    model.embed_videos([str(tmp_path / 'missing.mp4')])


def test_load_names_what_is_missing(workdir, tmp_path):
  with pytest.raises(FileNotFoundError, match='no workdir'):
    inference.load(str(tmp_path / 'nowhere'))
  with pytest.raises(FileNotFoundError, match='config.json'):
    inference.load(str(tmp_path))
  with pytest.raises(FileNotFoundError, match='no checkpoint of step 7'):
    inference.load(workdir, step=7)
  with pytest.raises(ValueError, match='dtype'):
    inference.load(workdir, dtype='float16')


def synthetic_protocol(model):
  """The tiny run's protocol block, as `index_model.load` gives it."""
  return {'name': 'synthetic', **index_model.protocol_block(model.config, 'synthetic')}


def test_index_resumes_lists_unreadable_files_and_search_finds_a_video_by_itself(
    workdir, model, videos, tmp_path):
  specs, rejected = embed_cli.list_inputs(videos)  # The CSV: paths and labels.
  assert len(specs) == NUM_VIDEOS and not rejected and specs[0].labels
  index = str(tmp_path / 'index')
  protocol = synthetic_protocol(model)
  first = embed_cli.build_index(model, protocol, specs[:4], index, hop=0.5, part_size=3,
                                progress=False)
  assert {k: first[k] for k in ('indexed', 'new', 'already', 'unreadable')} == {
      'indexed': 4, 'new': 4, 'already': 0, 'unreadable': []}
  # A second run over the CSV's directory, with a file that is no video: only the new files
  # are embedded, the bad one listed with its reason; the parts already written stay as they
  # were.
  directory = os.path.dirname(videos)
  broken = os.path.join(directory, 'broken.mkv')
  with open(broken, 'wb') as f:
    f.write(b'not a video')
  before = {n: os.path.getmtime(os.path.join(index, 'parts', n))
            for n in os.listdir(os.path.join(index, 'parts'))}
  assert sorted(before) == ['00000', '00001']
  specs, _ = embed_cli.list_inputs(directory)
  assert len(specs) == NUM_VIDEOS + 1
  second = embed_cli.build_index(model, protocol, specs, index, hop=0.5, part_size=3,
                                 progress=False)
  os.remove(broken)
  assert second['new'] == 2 and second['already'] == 4 and second['indexed'] == 6
  assert [u['name'] for u in second['unreadable']] == ['broken.mkv']
  assert all(os.path.getmtime(os.path.join(index, 'parts', n)) == t for n, t in before.items())
  stored = index_files.read_index(index)
  assert [u['file'] for u in stored.unreadable] == [broken]
  assert sorted(e['file'] for e in stored.files) == _files(videos)
  # 2 s videos, windows of 8 frames at stride 2 (1.6 s) every 0.5 s: at 0 s, and at 0.4 s
  # (the last one ends at the file's end).
  for row, entry in enumerate(stored.files):
    times = stored.window_times[stored.window_file == row]
    np.testing.assert_allclose(times, [[0, 1.6], [0.4, 2.0]], atol=1e-6)
    assert entry['duration'] == pytest.approx(2.0) and entry['windows'] == 2
  assert stored.settings['model']['step'] == 3 and stored.settings['hop'] == 0.5
  assert stored.settings['protocol'] == protocol
  # A window's rows are the API's embeddings of that clip of the file (one clip of 1.6 s).
  first_file = stored.files[0]['file']
  clip = model.inputs.read(convert.media.ClipSpec(name='x', path=first_file, start=0.4,
                                                  end=2.0), 'video')
  direct, _ = model.embed_clips([clip], 'video', num_clips=1)
  row = np.flatnonzero(stored.window_file == 0)[1]
  np.testing.assert_allclose(stored.window_vectors['vat'][row], direct.vat[0], rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(stored.window_vectors['va'][row], direct.va[0], rtol=1e-5,
                             atol=1e-5)
  # A file's embedding: its windows' unit embeddings averaged and normalised.
  mean = stored.window_vectors['vat'][stored.window_file == 0].mean(axis=0)
  np.testing.assert_allclose(stored.file_vectors['vat'][0], mean / np.linalg.norm(mean),
                             rtol=1e-5, atol=1e-6)
  third = embed_cli.build_index(model, protocol, specs, index, hop=0.5, part_size=3,
                                progress=False)
  assert third['new'] == 0 and third['already'] == NUM_VIDEOS + 1
  # Another model or step, or another hop, does not extend it.
  with pytest.raises(embed_cli.IndexRefused, match='hop=0.5'):
    embed_cli.build_index(model, protocol, specs, index, hop=1.0, progress=False)
  other = inference.Model(model.config, workdir, 3)
  os.utime(os.path.join(workdir, 'checkpoints', '3'), (1e9, 1e9))  # Step 3 trained again.
  with pytest.raises(embed_cli.IndexRefused, match='another model, checkpoint or protocol '
                     r'\(step 3 .* checkpoint modified'):
    embed_cli.build_index(other, protocol, specs, index, hop=0.5, progress=False)
  (tmp_path / 'empty').mkdir()
  with pytest.raises(embed_cli.IndexRefused, match='no media file under'):
    embed_cli.list_inputs(str(tmp_path / 'empty'))

  # Search: each file queried by its own video comes first, with score 1.
  index_dir = index
  index = moments.open_index(index_dir, model=model)
  for i in (0, 3):
    found = moments.search(index, video_file=stored.files[i]['file'], files=True, top_k=3)
    assert found[0]['file'] == stored.files[i]['file']
    assert found[0]['score'] == pytest.approx(1, abs=1e-4)
  space, query = moments.query_vector(index, audio_file=stored.files[1]['file'])
  assert space == 'sound' and query.shape == (model.config.model.va_dim,)
  with pytest.raises(ValueError, match='has no word'):
    moments.search(index, text='the and a')
  per_label = search_cli.precision_at(index, 5)
  assert set(per_label) == {l for e in stored.files for l in e['labels']}
  label = sorted(per_label)[0]
  scores = stored.file_vectors['vat'] @ model.embed_text([label.replace('_', ' ')]).vat[0]
  best = sorted(range(len(stored.files)), key=lambda i: -scores[i])[:5]
  assert per_label[label] == pytest.approx(
      100 * sum(label in stored.files[i]['labels'] for i in best) / 5)


def test_a_workdir_made_by_the_deepmind_importer_loads(data_dir, tmp_path):
  """The release's S3D-G pickle narrowed as tests/test_import_deepmind.py narrows it, imported
  (no config.json: the config is given), then embedding sentences (which needs the whole
  checkpoint restored)."""
  workdir, config = release_test.import_narrowed_s3d(tmp_path, data_dir)
  assert not os.path.exists(os.path.join(workdir, 'config.json'))

  with pytest.raises(FileNotFoundError, match='config.json'):
    inference.load(workdir)
  model = inference.load(workdir, config=config)
  assert model.step == 0
  text = model.embed_text(['a red circle moves left', 'a blue square moves up'])
  assert text.vat.shape == (2, config.model.vat_dim) and np.isfinite(text.vat).all()
  assert not np.allclose(text.vat[0], text.vat[1])
