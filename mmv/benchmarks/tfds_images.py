"""Reading an image benchmark from a TensorFlow Datasets build instead of its raw layout.

A build of `voc/2007` or `imagenet2012` under the data directory (`DIR/voc/2007/VERSION/`,
`DIR/imagenet2012/VERSION/` with `dataset_info.json`) is read through tensorflow-datasets, the
encoded images as stored (`SkipDecoding`), each made into a 1-frame record by the same
preprocessing as a raw image (`mmv.data.images.read_image`: decoded, short side resized), once,
into the cache. VOC: TFDS's `train` + `validation` are the devkit's trainval, `test` its test;
an image's labels are its `labels_no_difficult` (positive) and the classes of `labels` only
difficult objects have (`difficult/<class>`, as the raw reader writes them). ImageNet: `train`
and `validation`, label names the wnids (TFDS's ClassLabel order, sorted wnids, as the raw
reader's). An image that cannot be decoded is skipped and counted.
"""

import math
import os

from mmv.benchmarks import benchmark as bm
from mmv.benchmarks import cache
from mmv.benchmarks import sources
from mmv.benchmarks import tfds_source
from mmv.data import convert
from mmv.data import format as fmt
from mmv.data import images

# Benchmark → (TFDS 'name/config', {role: TFDS splits}).
BUILDS = {
    'voc2007': ('voc/2007', {'train': ('train', 'validation'), 'test': ('test',)}),
    'imagenet': ('imagenet2012', {'train': ('train',), 'test': ('validation',)}),
}


def _voc_labels(example, names):
  positive = {names[i] for i in example['labels_no_difficult']}
  difficult = {names[i] for i in example['labels']} - positive
  from mmv.benchmarks import voc2007  # pylint: disable=g-import-not-at-top
  return voc2007.label_names({**{n: 0 for n in difficult}, **{n: 1 for n in positive}})


def _label_names(benchmark, builder):
  features = builder.info.features
  if benchmark.name == 'voc2007':
    return tuple(features['labels'].feature.names)
  return tuple(features['label'].names)


def _images(benchmark, builder, splits, names, short_side):
  """(ClipSpec, Clip or reason) of every image of the TFDS `splits`."""
  tfds = tfds_source.import_tfds(builder.data_dir)
  for split in splits:
    ds = builder.as_dataset(split=split, shuffle_files=False,
                            decoders={'image': tfds.decode.SkipDecoding()},
                            read_config=tfds.ReadConfig(add_tfds_id=True))
    for example in ds.as_numpy_iterator():
      if benchmark.name == 'voc2007':
        labels = _voc_labels(example, names)
        name = example['image/filename'].decode()
      else:
        labels = [names[int(example['label'])]]
        name = example['file_name'].decode()
      spec = bm.clip(os.path.splitext(name)[0] or example['tfds_id'].decode(), None,
                     labels=labels)
      try:
        yield spec, images.read_image(bytes(example['image']), short_side=short_side)
      except images.ImageError as e:
        yield spec, str(e)


def prepare_build(benchmark, build_dir, root, split, options):
  """The split's `Prepared` from the TFDS build at `build_dir`, converted once into `root`."""
  tfds = tfds_source.import_tfds(build_dir)
  builder = tfds.builder_from_directory(build_dir)
  names = _label_names(benchmark, builder)
  if benchmark.name == 'voc2007':
    from mmv.benchmarks import voc2007  # pylint: disable=g-import-not-at-top
    if set(names) != set(voc2007.CLASSES):
      raise ValueError(f'{build_dir}: classes {names} are not the VOC classes')
    class_names = voc2007.CLASSES + tuple(voc2007.DIFFICULT + c for c in voc2007.CLASSES)
  else:
    class_names = names
  parts_dir = os.path.join(root, cache.PARTS)
  os.makedirs(parts_dir, exist_ok=True)
  cache.write_text_if_changed(os.path.join(parts_dir, fmt.LABEL_MAP), class_names)
  with open(os.path.join(build_dir, 'dataset_info.json')) as f:
    info = f.read()
  markers, roles = {}, {}
  for role, tfds_splits in BUILDS[benchmark.name][1].items():
    part = f'tfds_{role}'
    roles[role] = [part]
    key = cache.digest({'tfds': build_dir, 'info': info, 'classes': list(class_names),
                        'short_side': options.short_side, 'quality': images.JPEG_QUALITY})
    count = sum(builder.info.splits[s].num_examples for s in tfds_splits)

    def write(part=part, tfds_splits=tfds_splits, count=count):
      report = convert.write_shards(
          _images(benchmark, builder, tfds_splits, names, options.short_side), parts_dir,
          name=part, num_shards=max(1, math.ceil(count / options.clips_per_shard)),
          labels=class_names, fps=images.FPS, sample_rate=options.sample_rate, total=count,
          progress=options.progress)
      return report, images.FPS

    markers[part] = cache.write_part(parts_dir, part, key, write)
  return cache.link_prepared(benchmark, root, split, roles, markers, class_names, 'tfds',
                             images.FPS)


def prepare(benchmark, data_dir, cache_dir, splits, options, *, read_layout):
  """{split: Prepared}: from the benchmark's TFDS build in `data_dir` when there is one, else
  from its raw layout (`read_layout`)."""
  build = tfds_source.find_build(data_dir, [BUILDS[benchmark.name][0]])
  if build is None:
    return sources.prepare(benchmark, data_dir, cache_dir, splits, options,
                           read_layout=read_layout)
  root = cache.cache_dir_for(benchmark.name, data_dir, cache_dir)
  return {s: prepare_build(benchmark, build, root, s, options)
          for s in (benchmark.splits if splits is None else splits)}
