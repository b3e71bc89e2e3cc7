"""The embedding API and its CLIs: a checkpoint's embeddings of files, arrays and sentences equal
what the evaluation pipeline computes for the converted records; an index built, resumed and
searched; a workdir made by the DeepMind importer loads."""

import os
import types

import numpy as np
import pytest

from mmv import benchmarks
from mmv import checkpoint as ckpt_lib
from mmv import embed as embed_cli
from mmv import evaluate_protocol
from mmv import inference
from mmv import media_inputs
from mmv import search as search_cli
from mmv import sharding
from mmv import train_step
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
  config = conftest.small_config(data_dir)
  path = str(tmp_path_factory.mktemp('run'))
  model = train_step.create_model(config)
  state = train_step.create_train_state(config, model, train_step.create_optimizer(config),
                                   sharding.make_mesh())
  checkpointer = ckpt_lib.Checkpointer(os.path.join(path, 'checkpoints'))
  checkpointer.save(3, state, signature=ckpt_lib.variable_signature(state.variables()))
  checkpointer.wait_until_finished()
  checkpointer.close()
  with open(os.path.join(path, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort(indent=1))
  return path


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


def test_index_resumes_lists_unreadable_files_and_search_finds_a_video_by_itself(
    workdir, model, videos, tmp_path, monkeypatch):
  monkeypatch.setattr(embed_cli, 'READ_GROUP', 2)  # Parts of 3 files embedded 2 + 1 at a time.
  specs, rejected = embed_cli.list_inputs(videos)  # The CSV: paths and labels.
  assert len(specs) == NUM_VIDEOS and not rejected and specs[0].labels
  index = str(tmp_path / 'index')
  first = embed_cli.build_index(model, specs[:4], index, clips=2, part_size=3, progress=False)
  assert first == {'indexed': 4, 'new': 4, 'already': 0, 'unreadable': []}
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
  second = embed_cli.build_index(model, specs, index, clips=2, part_size=3, progress=False)
  os.remove(broken)
  assert second['new'] == 2 and second['already'] == 4 and second['indexed'] == 6
  assert [u['name'] for u in second['unreadable']] == ['broken.mkv']
  assert all(os.path.getmtime(os.path.join(index, 'parts', n)) == t for n, t in before.items())
  settings, va, vat, entries, unreadable = embed_cli.read_index(index)
  assert [u['file'] for u in unreadable] == [broken]
  assert sorted(e['file'] for e in entries) == _files(videos)
  assert va.shape == (6, model.config.model.va_dim) and vat.shape == (6, model.config.model.vat_dim)
  assert settings['model']['step'] == 3 and settings['clips'] == 2
  assert entries[0]['labels'] and len(entries[0]['clip_times']) == 2
  # The rows are the API's embeddings of the files.
  direct = model.embed_videos([entries[0]['file'], entries[5]['file']], clips=2)
  np.testing.assert_allclose(vat[[0, 5]], direct.vat, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(va[[0, 5]], direct.va, rtol=1e-5, atol=1e-5)
  third = embed_cli.build_index(model, specs, index, clips=2, part_size=3, progress=False)
  assert third['new'] == 0 and third['already'] == NUM_VIDEOS + 1
  # Another model or step, or other clips, does not extend it.
  with pytest.raises(embed_cli.IndexRefused, match='clips=2'):
    embed_cli.build_index(model, specs, index, clips=1, progress=False)
  other = inference.Model(model.config, workdir, 4)
  with pytest.raises(embed_cli.IndexRefused, match='another model or checkpoint .step 3'):
    embed_cli.build_index(other, specs, index, clips=2, progress=False)
  (tmp_path / 'empty').mkdir()
  with pytest.raises(embed_cli.IndexRefused, match='no media file under'):
    embed_cli.list_inputs(str(tmp_path / 'empty'))

  # Search: each file queried by its own video comes first, with score 1.
  loaded, settings, va, vat, entries = search_cli.load_index(index)
  for i in (0, 3):
    space, query = search_cli.query_embedding(loaded, settings, video=entries[i]['file'])
    order, scores = search_cli.rank(query, vat, 3)
    assert space == 'vat' and order[0] == i and scores[0] == pytest.approx(1, abs=1e-5)
  space, query = search_cli.query_embedding(loaded, settings, audio=entries[1]['file'])
  assert space == 'va' and query.shape == (model.config.model.va_dim,)
  with pytest.raises(ValueError, match='has no word'):
    search_cli.query_embedding(loaded, settings, text='the and a')
  per_label = search_cli.precision_at(loaded, vat, entries, 5)
  assert set(per_label) == {l for e in entries for l in e['labels']}
  label = sorted(per_label)[0]
  scores = vat @ loaded.embed_text([label.replace('_', ' ')]).vat[0]
  best = sorted(range(len(entries)), key=lambda i: -scores[i])[:5]
  assert per_label[label] == pytest.approx(
      100 * sum(label in entries[i]['labels'] for i in best) / 5)


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
