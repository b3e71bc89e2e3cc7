"""Configs: one set of fields for all, the paper's settings, `runlocal`, launch commands."""

import pytest

from configs import mmv_s3d
from configs import mmv_tsm_resnet50
from configs import mmv_tsm_resnet50x2
from configs import tiny

PAPER_CONFIGS = {mmv_s3d: 's3d_g', mmv_tsm_resnet50: 'tsm_resnet50',
                 mmv_tsm_resnet50x2: 'tsm_resnet50x2'}


def _fields(c, prefix=''):
  fields = set()
  for k, v in c.items():
    fields |= _fields(v, f'{prefix}{k}.') if hasattr(v, 'items') else {prefix + k}
  return fields


def test_every_config_has_the_same_fields():
  expected = _fields(tiny.get_config())
  for module in PAPER_CONFIGS:
    for arg in (None, 'runlocal'):
      assert _fields(module.get_config(arg)) == expected, (module.__name__, arg)


@pytest.mark.parametrize('module', list(PAPER_CONFIGS), ids=lambda m: m.__name__)
def test_paper_settings(module):
  c = module.get_config()
  assert c.model.video_backbone == PAPER_CONFIGS[module]
  assert c.model.audio_backbone == 'audio_resnet50' and c.model.width_multiplier == 1.0
  assert c.model.space_to_depth == (module is mmv_s3d)  # The released S3D-G's stem.
  assert (c.data.num_frames, c.data.fps, c.data.crop_size) == (32, 10.0, 200)
  assert c.data.scale_jitter == (0.8, 1.2) and c.data.random_flip
  assert (c.data.audio_sample_rate, c.data.stft_window, c.data.stft_hop) == (48000.0, 2048, 1024)
  assert (c.data.num_mel_bins, c.data.mel_lower_hz, c.data.mel_upper_hz) == (80, 80.0, 7600.0)
  assert (c.data.max_words, c.data.num_captions) == (16, 5)
  assert (c.model.word_embedding_dim, c.model.word2vec_max_words) == (300, 65536)
  assert (c.model.text_hidden, c.model.head, c.model.va_dim, c.model.vat_dim) == (
      2048, 'fac_relu', 512, 256)
  assert (c.model.bn_decay, c.model.bn_eps, c.loss.temperature) == (0.9, 1e-5, 0.07)
  assert (c.optim.learning_rate, c.optim.warmup_steps, c.train.batch_size) == (2e-3, 5000, 4096)
  assert f'python launch.py --config configs/{module.__name__.split(".")[-1]}.py' in (
      module.__doc__)
  assert ':runlocal' in module.__doc__


def test_runlocal_shrinks_data_and_widths_not_the_architecture():
  c = mmv_tsm_resnet50x2.get_config('runlocal')
  assert c.model.video_backbone == 'tsm_resnet50x2' and c.model.width_multiplier == 0.125
  t = tiny.get_config()
  for section in ('data', 'loss', 'optim', 'train', 'eval'):
    assert c[section] == t[section], section
  with pytest.raises(ValueError, match="unknown config argument 'runlokal'"):
    mmv_s3d.get_config('runlokal')
