"""Shard file names, `SPLIT-INDEX-of-COUNT` (`format.shard_name`), and the sets they form.

Apart from the reader and the converter that both use it, so that the converter's decoding
workers, which import the converter, import no TensorFlow.
"""

import re


def shard_sets(filenames, split):
  """{shard count: {index: file name}} of the shards of `split` among `filenames` (base names
  `SPLIT-INDEX-of-COUNT`; `train-extra-00000-of-00004` is no shard of `train`)."""
  sets = {}
  for filename in filenames:
    match = re.fullmatch(re.escape(split) + r'-(\d+)-of-(\d+)', filename)
    if match:
      sets.setdefault(int(match[2]), {})[int(match[1])] = filename
  return sets
