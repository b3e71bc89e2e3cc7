"""Zero-shot retrieval metrics between paired text and video embeddings."""

import numpy as np


def ranks(similarity):
  """1-based rank of the paired item (the diagonal) in each row of `similarity` [N, N].

  Ties count against the query: an item that scores as high as the pair ranks before it.
  """
  positive = np.diagonal(similarity)[:, None]
  return np.sum(similarity >= positive, axis=1)  # Counts the pair itself: rank 1 is best.


def retrieval_metrics(text, video):
  """R@1/5/10 (percent), median and mean rank for text→video and video→text.

  `text` [N, D] and `video` [N, D] are L2-normalised embeddings; row i of each is a pair.
  """
  if text.shape[0] != video.shape[0]:
    raise ValueError(f'{text.shape[0]} texts but {video.shape[0]} videos')
  similarity = text @ video.T
  metrics = {}
  for name, sim in (('t2v', similarity), ('v2t', similarity.T)):
    r = ranks(sim)
    for k in (1, 5, 10):
      metrics[f'{name}_R@{k}'] = float(100.0 * np.mean(r <= k))
    metrics[f'{name}_MedR'] = float(np.median(r))
    metrics[f'{name}_MeanR'] = float(np.mean(r))
  metrics['num_queries'] = int(text.shape[0])
  return metrics
