"""The evaluation runs the protocols a method's towers serve (mmv/methods/: TOWERS)."""

import pytest

from mmv import benchmarks
from mmv import evaluate_split
from mmv.methods import mmv as mmv_method


def test_protocols_that_embed_text_need_a_text_tower(config, monkeypatch):
  synthetic, esc50 = benchmarks.get('synthetic'), benchmarks.get('esc50')
  block = evaluate_split.evaluate_protocol.protocol(config, synthetic)
  assert evaluate_split.served_protocols(config, synthetic) == ('retrieval', 'linear',
                                                                'zero_shot')
  monkeypatch.setattr(mmv_method, 'TOWERS', ('video', 'audio'))
  assert evaluate_split.served_protocols(config, synthetic) == ('linear',)
  assert 'retrieval_test' not in evaluate_split.feature_roles(config, synthetic, block)
  monkeypatch.setattr(mmv_method, 'TOWERS', ('video',))
  with pytest.raises(ValueError, match="esc50 embeds audio: method 'mmv' has no audio tower"):
    evaluate_split.served_protocols(config, esc50)
