"""The MMV text encoder: word embeddings → Conv1D (kernel 1) → ReLU → max over words."""

import flax.linen as nn
import jax
import jax.numpy as jnp

# Path of the embedding matrix in the model's params (frozen when word2vec vectors are loaded).
EMBEDDINGS_PATH = 'text_backbone/word_embeddings/embedding'


class WordConvText(nn.Module):
  """[N, words] token ids → [N, hidden].

  As in the reference, padding is not masked before the max: id 0 has its own embedding.
  The paper freezes 300-d word2vec embeddings (`frozen_embeddings`: no gradient flows into them;
  the optimiser also leaves them out, see `mmv.optim`); without such a file they are learned.
  """
  vocab_size: int
  embedding_dim: int = 300
  hidden: int = 2048
  frozen_embeddings: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, tokens, train):
    del train
    x = nn.Embed(self.vocab_size, self.embedding_dim, dtype=self.dtype,
                 name='word_embeddings')(tokens)
    if self.frozen_embeddings:
      x = jax.lax.stop_gradient(x)
    x = nn.relu(nn.Conv(self.hidden, (1,), use_bias=True, dtype=self.dtype, name='conv')(x))
    return jnp.max(x, axis=-2)
