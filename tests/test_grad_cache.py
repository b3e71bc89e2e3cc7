"""Gradient accumulation with cached embeddings: the loss and negatives of the whole batch."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from mmv import sharding
from mmv import train_step


class StandIn(nn.Module):
  """The MMV model's interface and its BatchNorm, at a size that compiles in a second."""

  @nn.compact
  def __call__(self, batch, train):
    video, audio, text = batch['video'], batch['audio'], batch['text']
    video = nn.Dense(8)(video.reshape(video.shape[0], -1))
    video = nn.BatchNorm(use_running_average=not train, momentum=0.9)(video)
    return {'video_va': video, 'audio_va': nn.Dense(8)(audio),
            'video_vt': nn.Dense(8)(video), 'text_vt': nn.Embed(10, 8)(text).mean(axis=-2)}


def _batch(b=32, k=3):
  rng = np.random.default_rng(0)
  return {
      'video': rng.normal(size=(b, 2, 3)).astype(np.float32),
      'audio': rng.normal(size=(b, 4)).astype(np.float32),
      'text': rng.integers(0, 10, size=(b, k, 5)).astype(np.int32),
      'mask': np.ones(b, np.float32),
      'audio_mask': (rng.uniform(size=b) > 0.2).astype(np.float32),
      'text_mask': (rng.uniform(size=(b, k)) > 0.3).astype(np.float32),
  }


@pytest.mark.slow
@pytest.mark.parametrize('microbatches,implementation', [(2, 'dense'), (4, 'chunked')])
def test_cached_gradients_equal_those_of_the_whole_accumulated_batch(
    config, microbatches, implementation):
  mesh = sharding.make_mesh()
  config.loss.implementation = implementation
  loss_fn = train_step.make_loss_fn(config, mesh)
  model = StandIn()
  batch = _batch()
  variables = model.init(jax.random.key(0), batch, train=False)
  params, stats = variables['params'], variables['batch_stats']
  # Micro-batch i holds rows i, i+m, i+2m, ...: every device's rows are in every micro-batch.
  micro = [jax.tree.map(lambda a, i=i: a[i::microbatches], batch) for i in range(microbatches)]

  def one_pass_over_micro_batches(params):
    """What accumulation must compute: each micro-batch embedded with its own BatchNorm
    statistics, one loss over all embeddings, each in its example's row."""
    embeddings = [train_step.embed(model, params, stats, mb)[0] for mb in micro]
    rows = lambda *e: functools.reduce(
        lambda full, i: full.at[i::microbatches].set(e[i]),
        range(microbatches), jnp.zeros((len(batch['mask']),) + e[0].shape[1:]))
    return loss_fn(jax.tree.map(rows, *embeddings), batch)

  (loss, terms), grads = jax.jit(jax.value_and_grad(one_pass_over_micro_batches,
                                                    has_aux=True))(params)
  cached = jax.jit(functools.partial(train_step.cached_loss_and_grads, model=model, loss_fn=loss_fn,
                                     microbatches=microbatches))
  split = NamedSharding(mesh, P(sharding.BATCH_AXES))
  got = cached(params, stats, jax.device_put(batch, split))
  chex.assert_trees_all_close(jax.device_get(got[:3]), jax.device_get((loss, terms, grads)),
                              atol=1e-5, rtol=1e-5)

  expected_stats = stats
  for mb in micro:  # The moving averages are updated once per micro-batch, in order.
    expected_stats = train_step.embed(model, params, expected_stats, mb)[1]
  chex.assert_trees_all_close(jax.device_get(got[3]), jax.device_get(expected_stats),
                              atol=1e-6)

  # The negatives span the whole batch: the micro-batches' own losses average to another value.
  own_loss = jax.jit(lambda mb: loss_fn(train_step.embed(model, params, stats, mb)[0], mb)[0])
  assert abs(np.mean([float(own_loss(mb)) for mb in micro]) - float(loss)) > 1e-2
