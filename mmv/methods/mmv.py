"""MMV (Alayrac et al. 2020): video, audio and text towers into the FAC spaces, trained with
λ_va·NCE(video, audio) + λ_vt·MIL-NCE(video, K captions) over the global batch.

Views: one clip per record with its aligned audio and nearest captions (`config.data`).
Towers: `mmv.models.mmv` (backbones by name, projection heads). Loss: `mmv.losses` (dense)
or `mmv.chunked_losses` (a ring over the devices), chosen by `config.loss.implementation`.
Its settings are `config.model` and `config.loss`: it has no block of its own.
`config.model.towers` drops the audio or the text tower (and its loss term): the paper's
"VA only" rows (configs/va_s3d.py, configs/va_r2plus1d18.py) and MIL-NCE (configs/milnce_s3d.py).
"""

import functools

import jax.numpy as jnp

from mmv import chunked_losses
from mmv import losses
from mmv import optim
from mmv import sharding as shard_lib
from mmv.data import pipeline
from mmv.data import text as text_ops
from mmv.models import heads as heads_lib
from mmv.models import mmv as mmv_model
from mmv.models import text as text_lib

# The towers its model can have (embed_video, embed_audio, embed_text); `towers(config)` says
# which a config's model has: the evaluation runs the protocols they serve.
TOWERS = ('video', 'audio', 'text')


def config_fields():
  return None


def towers(config):
  """The towers of `config`'s model: those of `config.model.towers` among TOWERS."""
  chosen = mmv_model.towers(config.model)
  return tuple(t for t in TOWERS if t in chosen)


def check_config(config):
  heads_lib.check_towers(config.model.head, mmv_model.towers(config.model))
  missing = [t for t in mmv_model.towers(config.model) if t not in config.data.modalities]
  if missing:
    raise ValueError(f'model.towers {tuple(config.model.towers)} needs {missing} among '
                     f'data.modalities {tuple(config.data.modalities)}')
  if config.loss.implementation not in ('dense', 'chunked'):
    raise ValueError(f'loss.implementation={config.loss.implementation!r}; choose '
                     "'dense' or 'chunked'")


def build_model(config):
  """The MMV module, with the vocabulary size read from the dataset's vocab file (when it has
  a text tower)."""
  vocab_size = 0
  if 'text' in towers(config):
    vocab_size = len(text_ops.read_vocabulary(pipeline.vocab_path(config.data))) + 2
  return mmv_model.build_model(config.model, vocab_size=vocab_size)


def init_batch(config, batch_size=2):
  """Zero arrays of the model's batch: video, and audio and text for the towers it has."""
  shapes = pipeline.output_shapes(config.data)
  dtypes = {'video': jnp.float32, 'audio': jnp.float32, 'text': jnp.int32}
  return {name: jnp.zeros((batch_size,) + shapes[name], dtypes[name])
          for name in towers(config)}


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
