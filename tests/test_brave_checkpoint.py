"""Import of BraVe's released checkpoints, checked against BraVe's own Haiku code.

tests/data/brave_haiku_names.json lists every param and state leaf (module path, name, shape)
that BraVe's init creates, and tests/data/brave_reference_outputs.npz what BraVe's forward
functions compute from weights given by a formula of those names (`fake_values`), both recorded
by running google-deepmind/brave with dm-haiku (tests/data/make_brave_reference.py). A fake
release built from them (not from the importer's name table) must load into mmv's model and give
the same features and head outputs.
"""

import collections
import functools
import json
import os

import jax
import ml_collections
import numpy as np
import pytest

from mmv.models import brave as model_lib
from mmv.models import resnet
from mmv.models import tsm_resnet
from mmv.tools import brave_checkpoint
from mmv.tools import safe_pickle
from tests.data import make_brave_reference as reference

DATA = os.path.join(os.path.dirname(__file__), 'data')
PAPER = 'paper_narrow_video_broad_audio'
BOTH = 'narrow_video_broad_video_and_audio'


@functools.lru_cache()
def layouts():
  with open(os.path.join(DATA, 'brave_haiku_names.json')) as f:
    return json.load(f)['configs']


def fake_release(layout_name):
  layout = layouts()[layout_name]
  tree = {c: {m: {n: reference.fake_values(c, m, n, tuple(s)) for n, (s, _) in leaves.items()}
              for m, leaves in layout[c].items()} for c in ('params', 'state')}
  # brave/models/brave/config.py's model block, as BraveConfig keyword arguments.
  tree['config'] = dict(
      image_size_broad=112, num_frames_broad=64, step_broad=4,
      include_video_in_broad_view=layout_name == BOTH, include_audio_in_broad_view=True,
      image_size_narrow=224, num_frames_narrow=16, step_narrow=2, output_dims=128,
      tsm_resnet_width_multiplier=1, num_spectrogram_bins=80, fft_step=160, dataset_shards=[],
      input_audio_sample_rate=48_000, input_video_sample_rate=25.0)
  return tree


def brave_block(broad_video):
  return ml_collections.ConfigDict(dict(broad_video=broad_video, broad_audio=True,
                                        output_dim=128))


MODEL_BLOCK = ml_collections.ConfigDict(dict(video_backbone='tsm_resnet50',
                                             audio_backbone='audio_resnet50',
                                             width_multiplier=1.0))


def full_model(broad_video):
  return model_lib.Brave(
      narrow_video=tsm_resnet.TSMResNet(width=1),
      broad_video=tsm_resnet.TSMResNet(width=1) if broad_video else None,
      broad_audio=resnet.ResNetV2(50), head=model_lib.ProjectAndPredict(128, 4096),
      narrow_key='video_narrow')


def abstract_variables(model, x):
  batch = {'video_narrow': x['narrow_video'], 'video': x['broad_video'],
           'audio': x['broad_audio'][..., None]}
  return jax.eval_shape(functools.partial(model.init, train=False), jax.random.PRNGKey(0), batch)


def save(tree, tmp_path):
  path = str(tmp_path / 'release.npy')
  np.save(path, tree, allow_pickle=True)
  return path


@pytest.mark.slow
def test_release_round_trips_into_the_model_with_brave_outputs(tmp_path):
  x = reference.inputs()
  path = save(fake_release(BOTH), tmp_path)
  params, state, config = brave_checkpoint.load_release(path)
  brave_checkpoint.check_release_config(config, brave_block(broad_video=True), MODEL_BLOCK)
  model = full_model(broad_video=True)
  variables = brave_checkpoint.convert(params, state, abstract_variables(model, x))

  @jax.jit
  def run(variables):
    def outputs(m):
      f_n = m.narrow_video(x['narrow_video'], False)
      z_n, h_n = m.head(f_n, False)
      return {'narrow_features': f_n, 'narrow_z': z_n, 'narrow_h': h_n,
              'broad_video_features': m.broad_video(x['broad_video'], False),
              'broad_audio_features': m.broad_audio(x['broad_audio'][..., None], False)}
    # embed_video in the same program (op by op, the full-width ResNet-50 took seconds more).
    embedded = model.apply(variables, x['narrow_video'], method=model_lib.Brave.embed_video)
    return model.apply(variables, method=outputs), embedded

  got, (feats, z, _) = run(variables)
  want = np.load(os.path.join(DATA, 'brave_reference_outputs.npz'))
  for k in want:
    np.testing.assert_allclose(got[k], want[k], rtol=2e-3, atol=2e-4, err_msg=k)
  # embed_video is the narrow backbone (and the projection z), as the released evaluation.
  np.testing.assert_allclose(feats, want['narrow_features'], rtol=2e-3, atol=2e-4)
  np.testing.assert_allclose(z, want['narrow_z'], rtol=2e-3, atol=2e-4)


def test_paper_release_names_all_map_and_the_decay_mask_is_brave_s():
  """Every variable of the paper model (narrow video, broad audio) comes from the release and
  every release array is used (but the init's unused head copy, shared_project_1); BraVe's
  `exclude_bias_and_normalizers` on the Haiku names agrees with mmv's weight-decay mask."""
  from mmv.methods import brave as method  # pylint: disable=import-outside-toplevel
  layout = layouts()[PAPER]
  assert any(m.startswith('shared_project_1/') for m in layout['params'])
  abstract = abstract_variables(full_model(broad_video=False), reference.inputs())
  brave_checkpoint.convert(*[{m: {n: np.zeros(s, np.float32) for n, (s, _) in d.items()}
                              for m, d in layout[c].items()} for c in ('params', 'state')],
                           abstract)
  mask = method.weight_decay_mask(abstract['params'])
  for p, decayed in jax.tree_util.tree_leaves_with_path(mask):
    path = [k.key for k in p]
    _, module, name = brave_checkpoint.haiku_variable('params', path)
    brave_rule = not (name == 'b' or 'norm' in module)  # optimizers.py, with the module path.
    assert decayed == brave_rule, (path, module, name)


@pytest.mark.slow
def test_wrong_missing_and_extra_names_are_told(tmp_path):
  x = reference.inputs()
  abstract = abstract_variables(full_model(broad_video=False), x)
  release = fake_release(PAPER)
  stem = 'narrow_video_embedding/TSMResNetV2/tsm_resnet_stem'
  release['params']['narrow_video_embedding/TSMResNetV2/tsm_stem'] = release['params'].pop(stem)
  release['params']['shared_project/predictor/linear']['w'] = np.zeros((128, 10), np.float32)
  del release['state']['broad_audio_embedding/res_net_v2/batch_norm/~/var_ema']
  params, state, _ = brave_checkpoint.load_release(save(release, tmp_path))
  with pytest.raises(brave_checkpoint.IncompatibleReleaseError) as e:
    brave_checkpoint.convert(params, state, abstract)
  msg = str(e.value)
  assert f'missing (2): {stem}:w (for params/narrow_video/resnet/initial_conv/kernel)' in msg
  assert 'res_net_v2/batch_norm/~/var_ema:average (for batch_stats/broad_audio/final_bn/var)' \
      in msg
  assert 'other shape (1): shared_project/predictor/linear:w [128, 10]' in msg
  assert 'unused (1): narrow_video_embedding/TSMResNetV2/tsm_stem:w' in msg
  # A release of another model is told by its config, field by field.
  with pytest.raises(brave_checkpoint.IncompatibleReleaseError,
                     match=r'include_video_in_broad_view=True \(the config gives False\)'):
    brave_checkpoint.check_release_config(fake_release(BOTH)['config'], brave_block(False),
                                           MODEL_BLOCK)


def test_release_file_is_read_without_running_code(tmp_path):
  path = save({'params': {}, 'state': {}, 'config': collections.Counter()}, tmp_path)
  with pytest.raises(safe_pickle.UnsafePickleError, match='collections.Counter'):
    brave_checkpoint.load_release(path)
  with pytest.raises(brave_checkpoint.IncompatibleReleaseError, match='params.*state.*config'):
    brave_checkpoint.load_release(save({'params': {}}, tmp_path))
  np.save(str(tmp_path / 'plain.npy'), np.ones(3))
  with pytest.raises(safe_pickle.NotAPickleError, match='not one pickled object'):
    brave_checkpoint.load_release(str(tmp_path / 'plain.npy'))


@pytest.mark.slow
def test_import_release_writes_step_0_that_restores(tmp_path):
  """configs/brave.py (the V/A model) from a fake paper release: step 0 of a workdir, whose
  params are the release's; a second import into it, or a config of another model, is refused."""
  from configs import brave as brave_config  # pylint: disable=import-outside-toplevel
  from tests import test_brave_method  # pylint: disable=import-outside-toplevel
  config = brave_config.get_config()
  config.model.dtype = 'float32'
  release = fake_release(PAPER)
  path = save(release, tmp_path)
  out = str(tmp_path / 'run')
  counts = brave_checkpoint.import_release(path, config, out)
  assert counts['params'] > 40_000_000
  params = test_brave_method.final_params(config, out, 0)
  np.testing.assert_array_equal(
      params['head']['predictor']['dense_1']['kernel'],
      release['params']['shared_project/predictor/linear_1']['w'])
  with pytest.raises(FileExistsError, match='already holds checkpoints'):
    brave_checkpoint.import_release(path, config, out)
  config.brave.output_dim = 64
  with pytest.raises(brave_checkpoint.IncompatibleReleaseError, match='output_dims=128'):
    brave_checkpoint.import_release(path, config, str(tmp_path / 'other'))
