"""Where a benchmark's clips come from: its official raw layout, or a TFDS build of it."""

from mmv.benchmarks import cache
from mmv.benchmarks import tfds_source


def prepare(benchmark, data_dir, cache_dir, splits, options, *, read_layout, tfds_configs=None,
            tfds_fps=None):
  """{split: Prepared} of `splits` (None: every split found).

  read_layout(data_dir) → Layout reads the official files; tfds_configs(split) → the TFDS
  'name/config' builds that hold the split, best first: a split whose build is in `data_dir`
  is read from it (frames at `tfds_fps`), the others from the raw layout.
  """
  root = cache.cache_dir_for(benchmark.name, data_dir, cache_dir)
  prepared, raw = {}, []
  for split in (benchmark.splits if splits is None else splits):
    build = tfds_source.find_build(data_dir, tfds_configs(split)) if tfds_configs else None
    if build:
      prepared[split] = tfds_source.prepare_split(benchmark, build, root, split, options,
                                                  fps=tfds_fps)
    else:
      raw.append(split)
  if raw:
    layout = read_layout(data_dir)
    chosen = None if splits is None and not prepared else tuple(raw)
    prepared.update(cache.prepare_layout(benchmark, layout, data_dir, root, chosen, options))
  return {split: prepared[split] for split in sorted(prepared, key=_split_order(benchmark))}


def _split_order(benchmark):
  order = {s: i for i, s in enumerate(benchmark.splits)}
  return lambda split: (order.get(split, len(order)), split)
