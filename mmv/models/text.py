"""The MMV text encoder: word embeddings → Conv1D (kernel 1) → ReLU → max over words."""

import flax.linen as nn
import jax.numpy as jnp


class WordConvText(nn.Module):
  """[N, words] token ids → [N, hidden].

  As in the reference, padding is not masked before the max: id 0 has its own embedding.
  The paper freezes 300-d word2vec embeddings; without such a file they are learned.
  """
  vocab_size: int
  embedding_dim: int = 300
  hidden: int = 2048

  @nn.compact
  def __call__(self, tokens, train):
    del train
    x = nn.Embed(self.vocab_size, self.embedding_dim)(tokens)
    x = nn.relu(nn.Conv(self.hidden, (1,), use_bias=True)(x))
    return jnp.max(x, axis=-2)
