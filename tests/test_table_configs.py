"""The configs of the MMV table's other rows: "VA only" (video and audio, NCE) with S3D-G and
R(2+1)D-18, and MIL-NCE (video and text, S3D-G): their models at the paper's sizes (abstract
shapes only), what the evaluation runs on them, and a few training steps of each `:runlocal`."""

import math
import types

import jax
import pytest

from configs import milnce_s3d
from configs import tiny
from configs import va_r2plus1d18
from configs import va_s3d
from mmv import benchmarks
from mmv import evaluate_protocol
from mmv import evaluate_split
from mmv import train
from mmv.methods import mmv as mmv_method
from mmv.models import mmv as mmv_model

CONFIGS = {'va_s3d': va_s3d, 'va_r2plus1d18': va_r2plus1d18, 'milnce_s3d': milnce_s3d}
# The towers and the loss term each trains with.
TOWERS = {'va_s3d': ('video', 'audio'), 'va_r2plus1d18': ('video', 'audio'),
          'milnce_s3d': ('video', 'text')}
TERMS = {'va_s3d': 'loss_va', 'va_r2plus1d18': 'loss_va', 'milnce_s3d': 'loss_vt'}


def _fields(c, prefix=''):
  fields = set()
  for k, v in c.items():
    fields |= _fields(v, f'{prefix}{k}.') if hasattr(v, 'items') else {prefix + k}
  return fields


def _count(tree):
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _abstract_params(c, vocab_size=1000):
  model = mmv_model.build_model(c.model, vocab_size=vocab_size)
  batch = mmv_method.init_batch(c, batch_size=2)
  return jax.eval_shape(lambda rng: model.init(rng, batch, train=False), jax.random.key(0))


@pytest.mark.parametrize('name', list(CONFIGS))
def test_same_fields_as_every_config_and_launch_commands(name):
  module = CONFIGS[name]
  for arg in (None, 'runlocal'):
    assert _fields(module.get_config(arg)) == _fields(tiny.get_config()), arg
  assert f'python launch.py --config configs/{name}.py ' in module.__doc__
  assert f'--config configs/{name}.py:runlocal' in module.__doc__
  with pytest.raises(ValueError, match="unknown config argument 'runlokal'"):
    module.get_config('runlokal')


@pytest.mark.parametrize('name', ['va_s3d', 'va_r2plus1d18'])
def test_va_only_models_at_paper_size(name):
  """Video and audio towers only; S_va heads of 512: video MLP + BN, audio linear."""
  c = CONFIGS[name].get_config()
  assert tuple(c.data.modalities) == tuple(c.model.towers) == ('video', 'audio')
  assert (c.data.num_frames, c.data.crop_size, c.train.batch_size) == (32, 200, 4096)
  variables = _abstract_params(c)
  params = variables['params']
  assert set(params) == {'video_backbone', 'audio_backbone', 'heads'}
  # S3D-G: 9.1M (the paper's table); R(2+1)D-18 as torchvision builds it: 31.3M.
  million = {'va_s3d': 9.1, 'va_r2plus1d18': 31.3}[name]
  assert round(_count(params['video_backbone']) / 1e6, 1) == million
  assert round(_count(params['audio_backbone']) / 1e6, 1) == 23.5  # ResNet-50 (v2), no fc.
  features = {'va_s3d': 1024, 'va_r2plus1d18': 512}[name]
  heads = params['heads']
  assert set(heads) == {'video_va_proj', 'audio_proj'}
  assert heads['video_va_proj']['Dense_0']['kernel'].shape == (features, 512)
  assert heads['video_va_proj']['Dense_1']['kernel'].shape == (512, 512)
  assert heads['audio_proj'] == {'Dense_0': {'kernel': jax.ShapeDtypeStruct((2048, 512),
                                                                            'float32'),
                                             'bias': jax.ShapeDtypeStruct((512,), 'float32')}}


def test_milnce_model_at_paper_size():
  """Video and text towers only; one linear 512-d head each, with bias, no BatchNorm."""
  c = milnce_s3d.get_config()
  assert tuple(c.data.modalities) == tuple(c.model.towers) == ('video', 'text')
  assert c.data.num_captions == 5 and c.model.word_embedding_dim == 300
  assert not c.model.space_to_depth
  variables = _abstract_params(c, vocab_size=65536 + 2)
  params = variables['params']
  assert set(params) == {'video_backbone', 'text_backbone', 'heads'}
  assert round(_count(params['video_backbone']) / 1e6, 1) == 9.2  # Plain stem (9.1M s2d).
  shapes = jax.tree.map(lambda x: x.shape, params['heads'])
  assert shapes == {'video_proj': {'Dense_0': {'kernel': (1024, 512), 'bias': (512,)}},
                    'text_proj': {'Dense_0': {'kernel': (2048, 512), 'bias': (512,)}}}
  assert 'heads' not in variables.get('batch_stats', {})
  # Text: 300-d words → 2048 (Conv1D kernel 1, with bias); the embeddings are 65,538 x 300.
  assert _count(params['text_backbone']) == 65538 * 300 + 300 * 2048 + 2048


def test_evaluation_runs_what_the_towers_serve():
  synthetic, esc50 = benchmarks.get('synthetic'), benchmarks.get('esc50')
  va = va_s3d.get_config('runlocal')
  assert evaluate_split.served_protocols(va, synthetic) == ('linear',)  # No text: no retrieval.
  assert evaluate_split.served_protocols(va, esc50) == ('linear',)
  vt = milnce_s3d.get_config('runlocal')
  assert evaluate_split.served_protocols(vt, synthetic) == ('retrieval', 'linear', 'zero_shot')
  with pytest.raises(ValueError, match="esc50 embeds audio: method 'mmv' has no audio tower"):
    evaluate_split.served_protocols(vt, esc50)


def test_towers_that_cannot_be_built_are_refused():
  c = va_s3d.get_config('runlocal')
  c.model.head = 'fac_relu'
  with pytest.raises(ValueError, match='needs the video, audio and text towers'):
    mmv_method.check_config(c)
  c = va_s3d.get_config('runlocal')
  c.data.modalities = ('video',)
  with pytest.raises(ValueError, match=r"needs \['audio'\] among data.modalities"):
    mmv_method.check_config(c)
  c.model.towers = ('audio', 'text')
  with pytest.raises(ValueError, match='the video tower and one or both of audio, text'):
    mmv_method.check_config(c)


@pytest.mark.slow
@pytest.mark.parametrize('name', list(CONFIGS))
def test_runlocal_trains(name, data_dir, tmp_path):
  """A few steps of each `:runlocal` on the small synthetic dataset: finite losses, the one
  loss term of its towers, and the loss is that term. What these configs add is towers, heads
  and a loss, so the backbones are the tiny ones (their paper backbones are checked at full
  size above and in test_backbones.py): S3D-G and ResNet-50 even at 1/32 width took 6-9 min
  each to compile and run on the shared 2-core machine."""
  c = CONFIGS[name].get_config('runlocal')
  c.data.data_dir = data_dir
  c.data.shuffle_buffer = 16
  c.model.video_backbone, c.model.audio_backbone, c.model.width = 'tiny_video', 'tiny_audio', 8
  c.optim.warmup_steps = 1
  c.train.batch_size = 8
  c.train.steps = 3
  c.train.log_every = 1
  c.train.checkpoint_every = 3
  result = train.train(c, str(tmp_path))
  assert result['step'] == 3
  for _, metrics in result['history']:
    assert set(metrics) & {'loss_va', 'loss_vt'} == {TERMS[name]}
    assert math.isfinite(metrics['loss']) and metrics['loss'] > 0
    assert metrics['loss'] == pytest.approx(metrics[TERMS[name]])
  params = result['state'].params
  assert set(params) == {'video_backbone', 'heads', f'{TOWERS[name][1]}_backbone'}


def test_evaluating_a_model_without_text_needs_no_vocabulary(tmp_path):
  """A "VA only" run trained on data without a vocab.txt (AudioSet) is evaluated without one;
  a model with a text tower still needs it (to encode captions)."""
  prepared = types.SimpleNamespace(data_dir=str(tmp_path), class_names=['a', 'b'])
  bench = benchmarks.get('synthetic')
  va = va_s3d.get_config('runlocal')
  va.data.data_dir = str(tmp_path)  # No vocab.txt there.
  data = evaluate_protocol.benchmark_data_config(va, bench, prepared)
  assert tuple(data.modalities) == ('video',)
  vt = milnce_s3d.get_config('runlocal')
  vt.data.data_dir = str(tmp_path)
  with pytest.raises(FileNotFoundError, match='the training vocabulary'):
    evaluate_protocol.benchmark_data_config(vt, bench, prepared)
