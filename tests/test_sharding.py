"""The (data, fsdp) mesh and the parameter sharding rules of the config."""

import chex
import jax
import pytest
from jax.sharding import PartitionSpec as P

from mmv import checkpoint as ckpt_lib
from mmv import optim
from mmv import sharding
from mmv import train
from mmv import train_step

FSDP = sharding.FSDP_AXIS


def test_fsdp_splits_the_largest_divisible_dimension():
  assert sharding.fsdp_spec((3, 3, 64, 128), 4) == P(None, None, None, FSDP)
  assert sharding.fsdp_spec((256, 64), 4) == P(FSDP, None)
  assert sharding.fsdp_spec((16, 16), 2) == P(None, FSDP)  # A tie: the later one.
  assert sharding.fsdp_spec((57, 16), 2) == P(None, FSDP)  # 57 does not split.
  assert sharding.fsdp_spec((7, 5), 2) == P()
  assert sharding.fsdp_spec((128,), 1) == P()


def test_the_first_matching_rule_decides_and_bad_rules_are_errors():
  rules = ((r'Conv_5/kernel$', 'replicate'), (r'kernel$', 'fsdp'), ('.*', 'replicate'))
  assert sharding.param_spec('video/Conv_5/kernel', (3, 32), rules, 2) == P()
  assert sharding.param_spec('video/Conv_4/kernel', (3, 32), rules, 2) == P(None, FSDP)
  assert sharding.param_spec('video/Conv_4/bias', (32,), rules, 2) == P()
  with pytest.raises(ValueError, match="no sharding rule matches parameter 'a/bias'"):
    sharding.param_spec('a/bias', (4,), rules[:2], 2)
  with pytest.raises(ValueError, match='is not \\(regex, one of'):
    sharding.check_rules((('.*', 'shard'),))


def test_mesh_from_config(config):
  config.mesh.fsdp = 2
  assert dict(sharding.make_mesh(config.mesh).shape) == {'data': 4, 'fsdp': 2}
  config.mesh.data = 2
  with pytest.raises(ValueError, match='2 × 2 must equal the 8 devices'):
    sharding.make_mesh(config.mesh)
  config.mesh.fsdp = 3
  with pytest.raises(ValueError, match='mesh.fsdp=3'):
    sharding.make_mesh(config.mesh)


def _specs(tree):
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(path, simple=True, separator='/'): leaf.sharding.spec
          for path, leaf in flat}


@pytest.mark.slow
def test_rules_place_parameters_and_adam_moments_through_training(config, tmp_path):
  """fsdp=2 with rules for the word embeddings and the video kernels, the chunked loss and two
  micro-batches: the state is created, trained, saved and restored on those shardings."""
  config.mesh.fsdp = 2
  config.mesh.param_rules = ((r'ConvBNReLU_5/Conv_0/kernel$', 'replicate'),
                             (r'^text_backbone/Embed_0/embedding$', 'fsdp'),
                             (r'^video_backbone/.*/kernel$', 'fsdp'),
                             ('.*', 'replicate'))
  config.loss.implementation = 'chunked'
  config.loss.chunk_size = 1
  config.train.microbatches = 2
  config.train.steps = config.train.checkpoint_every = 2
  expected = {
      'text_backbone/Embed_0/embedding': P(None, FSDP),  # [57, 16]: the vocabulary is odd.
      'video_backbone/ConvBNReLU_0/Conv_0/kernel': P(None, None, None, FSDP),  # [5,5,3,8]
      'video_backbone/ConvBNReLU_2/Conv_0/kernel': P(None, None, None, None, FSDP),
      'video_backbone/ConvBNReLU_5/Conv_0/kernel': P(),  # The first rule keeps it whole.
  }
  summary = train.train(config, str(tmp_path))
  state = summary['state']
  specs = _specs(state.params)
  for name, spec in specs.items():
    if name in expected:
      assert spec == expected[name], name
    elif name.startswith('video_backbone/') and name.endswith('/kernel'):
      assert FSDP in spec, name
    else:
      assert spec == P(), name
  adam = state.opt_state[0]
  assert _specs(adam.mu) == specs and _specs(adam.nu) == specs
  assert adam.count.sharding.spec == P()
  assert all(abs(logged['loss']) < 1e3 for _, logged in summary['history'])

  mesh = sharding.make_mesh(config.mesh)
  model = train_step.create_model(config)
  abstract = train_step.abstract_train_state(config, model, optim.make_optimizer(config.optim, 2),
                                        mesh)
  signature = ckpt_lib.variable_signature(
      {'params': abstract.params, 'batch_stats': abstract.batch_stats})
  checkpointer = ckpt_lib.Checkpointer(str(tmp_path / 'checkpoints'), read_only=True)
  restored, _ = checkpointer.restore(abstract, signature=signature)
  assert _specs(restored.params) == specs
  chex.assert_trees_all_equal(jax.device_get(restored.params), jax.device_get(state.params))
