"""MMV (Alayrac et al. 2020): video, audio and text towers into the FAC spaces, trained with
λ_va·NCE(video, audio) + λ_vt·MIL-NCE(video, K captions) over the global batch.

Views: one clip per record with its aligned audio and nearest captions (`config.data`).
Towers: `mmv.models.mmv` (backbones by name, projection heads). Loss: `mmv.losses` (dense)
or `mmv.chunked_losses` (a ring over the devices), chosen by `config.loss.implementation`.
Its settings are `config.model` and `config.loss`: it has no block of its own.
"""

import functools

import jax.numpy as jnp

from mmv import chunked_losses
from mmv import losses
from mmv import optim
from mmv import sharding as shard_lib
from mmv.data import pipeline
from mmv.data import text as text_ops
from mmv.models import mmv as mmv_model
from mmv.models import text as text_lib

# The towers its model has (embed_video, embed_audio, embed_text): the evaluation runs the
# protocols they serve.
TOWERS = ('video', 'audio', 'text')


def config_fields():
  return None


def check_config(config):
  if config.loss.implementation not in ('dense', 'chunked'):
    raise ValueError(f'loss.implementation={config.loss.implementation!r}; choose '
                     "'dense' or 'chunked'")


def build_model(config):
  """The MMV module, with the vocabulary size read from the dataset's vocab file."""
  words = text_ops.read_vocabulary(pipeline.vocab_path(config.data))
  return mmv_model.build_model(config.model, vocab_size=len(words) + 2)


def init_batch(config, batch_size=2):
  """Zero video, audio and text of the model's batch (the model takes all three)."""
  shapes = pipeline.output_shapes(config.data)
  return {'video': jnp.zeros((batch_size,) + shapes['video'], jnp.float32),
          'audio': jnp.zeros((batch_size,) + shapes['audio'], jnp.float32),
          'text': jnp.zeros((batch_size,) + shapes['text'], jnp.int32)}


def make_loss_fn(config, mesh, implementation=None):
  """`(embeddings, batch) -> (loss, terms)` with the dense or the chunked contrastive losses.

  `implementation` overrides `config.loss.implementation` ('dense' | 'chunked').
  """
  c = config.loss
  implementation = implementation or c.implementation
  if implementation == 'dense':
    nce_fn, mil_nce_fn = losses.nce, losses.mil_nce
  elif implementation == 'chunked':
    ring = dict(mesh=mesh, axes=shard_lib.BATCH_AXES, chunk_size=c.chunk_size)
    nce_fn = functools.partial(chunked_losses.nce, **ring)
    mil_nce_fn = functools.partial(chunked_losses.mil_nce, **ring)
  else:
    raise ValueError(f"loss.implementation={implementation!r}; choose 'dense' or 'chunked'")
  return functools.partial(losses.mmv_loss, temperature=c.temperature, weight_va=c.weight_va,
                           weight_vt=c.weight_vt, nce_fn=nce_fn, mil_nce_fn=mil_nce_fn)


def frozen_params(config):
  """Param paths the optimiser leaves alone: the word2vec embeddings when loaded."""
  return (text_lib.EMBEDDINGS_PATH,) if config.model.word2vec else ()


def make_optimizer(config):
  """Adam (AdamW with `optim.weight_decay`), warmup and cosine; frozen word2vec untouched."""
  return optim.make_optimizer(config.optim, config.train.steps, frozen=frozen_params(config))
