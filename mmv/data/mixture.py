"""Training mixtures: every batch drawn from several datasets by weight.

`data.mixture` lists (data_dir, split, weight); each batch holds a fixed number of examples of
each source (the weights' shares of the batch, rounded by largest remainder), so every step
sees the same mix, e.g. HowTo100M-like clips with text next to AudioSet-like clips without.
A source's missing modality shows in the per-example masks (`audio_mask`, `text_mask`), which
the losses honour. Every source is read as its own stream with its own position, so a resumed
run continues each one where it stopped.
"""

import collections
import math

import tensorflow as tf

Source = collections.namedtuple('Source', ['name', 'data_dir', 'split', 'weight'])


def train_sources(c):
  """The sources of data config `c`: its mixture, or `data_dir`/`train_split` alone."""
  if not c.mixture:
    return [Source(c.train_split, c.data_dir, c.train_split, 1.0)]
  sources = []
  for entry in c.mixture:
    if len(entry) != 3 or float(entry[2]) <= 0:
      raise ValueError(f'data.mixture entries are (data_dir, split, weight > 0), got {entry!r}')
    data_dir, split, weight = entry
    sources.append(Source(f'{data_dir}:{split}', data_dir, split, float(weight)))
  return sources


def batch_counts(weights, batch_size):
  """Examples of each source in a batch: the weights' shares, by largest remainder."""
  total = float(sum(weights))
  exact = [w / total * batch_size for w in weights]
  counts = [math.floor(x) for x in exact]
  by_remainder = sorted(range(len(weights)), key=lambda i: counts[i] - exact[i])
  for i in by_remainder[:batch_size - sum(counts)]:
    counts[i] += 1
  if min(counts) < 1:
    raise ValueError(f'a batch of {batch_size} per process has no room for every source of '
                     f'weights {list(weights)}: shares {counts}')
  return counts


def combine(datasets):
  """Batches whose rows are those of each source's batch, in source order."""
  if len(datasets) == 1:
    return datasets[0]
  return tf.data.Dataset.zip(tuple(datasets)).map(
      lambda *parts: {k: tf.concat([p[k] for p in parts], 0) for k in parts[0]})
