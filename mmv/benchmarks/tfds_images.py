"""Reading an image benchmark from a TensorFlow Datasets build instead of its raw layout.

A build of `voc/2007` or `imagenet2012` under the data directory (`DIR/voc/2007/VERSION/`,
`DIR/imagenet2012/VERSION/` with `dataset_info.json`) is read through tensorflow-datasets, the
encoded images as stored (`SkipDecoding`), each made into a 1-frame record by the same
preprocessing as a raw image (`mmv.ingest.images.read_image`: decoded, short side resized), once,
into the cache. VOC: TFDS's `train` + `validation` are the devkit's trainval, `test` its test;
an image's labels are its `labels_no_difficult` (positive) and the classes of `labels` only
difficult objects have (`difficult/<class>`, as the raw reader writes them). ImageNet: `train`
and `validation`, label names the wnids (TFDS's ClassLabel order, sorted wnids, as the raw
reader's). An image that cannot be decoded is skipped and counted.
"""

import dataclasses
import math
import os
from typing import Callable

from mmv.benchmarks import benchmark as bm
from mmv.benchmarks import cache
from mmv.benchmarks import sources
from mmv.benchmarks import tfds_source
from mmv.data import format as fmt
from mmv.ingest import convert
from mmv.ingest import images


@dataclasses.dataclass(frozen=True)
class Build:
  """How a benchmark reads its TFDS build: `config` ('name/config'), `splits` {role: TFDS
  splits}, `class_names(builder)` → the records' label names in id order, `labels(example,
  names)` → an image's label names (`names`: the build's ClassLabel names), `name(example)` →
  the image's name."""
  config: str
  splits: dict
  class_names: Callable
  labels: Callable
  name: Callable


def _images(build, builder, splits, short_side):
  """(ClipSpec, Clip or reason) of every image of the TFDS `splits`."""
  tfds = tfds_source.import_tfds(builder.data_dir)
  names = label_names(builder)
  for split in splits:
    ds = builder.as_dataset(split=split, shuffle_files=False,
                            decoders={'image': tfds.decode.SkipDecoding()},
                            read_config=tfds.ReadConfig(add_tfds_id=True))
    for example in ds.as_numpy_iterator():
      spec = bm.clip(build.name(example) or example['tfds_id'].decode(), None,
                     labels=build.labels(example, names))
      try:
        yield spec, images.read_image(bytes(example['image']), short_side=short_side)
      except images.ImageError as e:
        yield spec, str(e)


def label_names(builder):
  """The ClassLabel names of the build's 'label' or 'labels' feature."""
  features = builder.info.features
  label = features['label'] if 'label' in features else features['labels'].feature
  return tuple(label.names)


def prepare_build(benchmark, build, build_dir, root, split, options):
  """The split's `Prepared` from the TFDS build at `build_dir`, converted once into `root`."""
  tfds = tfds_source.import_tfds(build_dir)
  builder = tfds.builder_from_directory(build_dir)
  class_names = build.class_names(builder)
  parts_dir = os.path.join(root, cache.PARTS)
  os.makedirs(parts_dir, exist_ok=True)
  cache.write_text_if_changed(os.path.join(parts_dir, fmt.LABEL_MAP), class_names)
  with open(os.path.join(build_dir, 'dataset_info.json')) as f:
    info = f.read()
  markers, roles = {}, {}
  for role, tfds_splits in build.splits.items():
    part = f'tfds_{role}'
    roles[role] = [part]
    key = cache.digest({'tfds': build_dir, 'info': info, 'classes': list(class_names),
                        'short_side': options.short_side, 'quality': images.JPEG_QUALITY})
    count = sum(builder.info.splits[s].num_examples for s in tfds_splits)

    def write(part=part, tfds_splits=tfds_splits, count=count):
      report = convert.write_shards(
          _images(build, builder, tfds_splits, options.short_side), parts_dir,
          name=part, num_shards=max(1, math.ceil(count / options.clips_per_shard)),
          labels=class_names, fps=images.FPS, sample_rate=options.sample_rate, total=count,
          progress=options.progress)
      return report, images.FPS

    markers[part] = cache.write_part(parts_dir, part, key, write)
  return cache.link_prepared(benchmark, root, split, roles, markers, class_names, 'tfds',
                             images.FPS)


def prepare(benchmark, data_dir, cache_dir, splits, options, *, read_layout, build):
  """{split: Prepared}: from the benchmark's TFDS build (`build`, a `Build`) in `data_dir` when
  there is one, else from its raw layout (`read_layout`)."""
  build_dir = tfds_source.find_build(data_dir, [build.config])
  if build_dir is None:
    return sources.prepare(benchmark, data_dir, cache_dir, splits, options,
                           read_layout=read_layout)
  root = cache.cache_dir_for(benchmark.name, data_dir, cache_dir)
  return {s: prepare_build(benchmark, build, build_dir, root, s, options)
          for s in (benchmark.splits if splits is None else splits)}
