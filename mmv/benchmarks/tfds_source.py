"""Reading a benchmark from a TensorFlow Datasets build instead of its raw videos.

A TFDS build (`TFDS_DIR/NAME/CONFIG/VERSION/` with `dataset_info.json`, as
`tfds.builder(...).download_and_prepare()` leaves it) already holds decoded, JPEG-encoded
frames. They are read through tensorflow-datasets with `SkipDecoding`, so the JPEG bytes are
copied into the shard format as they are (no decoding, no re-encoding; frames of another
encoding are re-encoded as JPEG), once per build, into the same cache as raw conversions. The
frames keep the build's frame rate, which TFDS does not record: the benchmark says it (25 fps
for UCF101). Labels keep the build's ClassLabel order (TFDS's UCF101 labels are classInd's,
from 0). A build of frames resized to a fixed size (TFDS's `ucf101_1_256`: 256x256, whatever
the video's aspect) departs from the published input, which read the videos at their own size:
its `Prepared` says so (`departures`).

tensorflow-datasets is imported only when a build is found (`pip install 'mmv[tfds]'`).
"""

import glob
import math
import os

from mmv.benchmarks import benchmark as bm
from mmv.benchmarks import cache
from mmv.ingest import convert
from mmv.data import format as fmt
from mmv.ingest import media

_JPEG_MAGIC = b'\xff\xd8'


def find_build(tfds_dir, configs):
  """The version directory of the first of `configs` ('name/config') built under `tfds_dir`
  (the newest version), or None."""
  for config in configs:
    infos = glob.glob(os.path.join(glob.escape(os.path.join(tfds_dir, config)), '*',
                                   'dataset_info.json'))
    if infos:
      newest = max(infos, key=lambda p: [int(v) if v.isdigit() else v for v in
                                         os.path.basename(os.path.dirname(p)).split('.')])
      return os.path.dirname(newest)
  return None


def import_tfds(build_dir):
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(f'{build_dir} is a TensorFlow Datasets build; reading it needs '
                      "tensorflow-datasets (pip install 'mmv[tfds]')") from e
  return tfds


def _as_jpegs(frames):
  """The frames as JPEG bytes: as they are when they are JPEGs, else decoded and encoded."""
  if all(f.startswith(_JPEG_MAGIC) for f in frames):
    return list(frames)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return [tf.io.encode_jpeg(tf.io.decode_image(f, channels=3), quality=95).numpy()
          for f in frames]


def _clips(builder, split, names, fps):
  """(ClipSpec, Clip) pairs of a split of the build."""
  tfds = import_tfds(builder.data_dir)
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          decoders={'video': tfds.decode.SkipDecoding()},
                          read_config=tfds.ReadConfig(add_tfds_id=True))
  for example in ds.as_numpy_iterator():
    spec = bm.clip(example['tfds_id'].decode(), None, labels=[names[int(example['label'])]])
    jpegs = _as_jpegs(example['video'])
    yield spec, media.Clip(jpegs=jpegs, waveform=None, start=0.0, end=len(jpegs) / fps)


def prepare_split(benchmark, build_dir, root, split, options, *, fps):
  """Copies the train and test splits of the build at `build_dir` into parts of the cache
  `root` (once) and links `root/split`; the split's `Prepared`."""
  tfds = import_tfds(build_dir)
  builder = tfds.builder_from_directory(build_dir)
  names = tuple(builder.info.features['label'].names)
  parts_dir = os.path.join(root, cache.PARTS)
  os.makedirs(parts_dir, exist_ok=True)
  cache.write_text_if_changed(os.path.join(parts_dir, fmt.LABEL_MAP), names)
  with open(os.path.join(build_dir, 'dataset_info.json')) as f:
    info = f.read()
  config = os.path.basename(os.path.dirname(build_dir))
  markers, roles = {}, {}
  for role in bm.ROLES:
    part = f'tfds_{config}_{role}'
    roles[role] = [part]
    key = cache.digest({'tfds': build_dir, 'info': info, 'classes': list(names), 'fps': fps})
    count = builder.info.splits[role].num_examples

    def write(part=part, role=role, count=count):
      report = convert.write_shards(
          _clips(builder, role, names, fps), parts_dir, name=part,
          num_shards=max(1, math.ceil(count / options.clips_per_shard)), labels=names, fps=fps,
          sample_rate=options.sample_rate, total=count, progress=options.progress)
      return report, fps

    markers[part] = cache.write_part(parts_dir, part, key, write)
  return cache.link_prepared(benchmark, root, split, roles, markers, names, 'tfds', fps,
                             departures=_departures(builder, config))


def _departures(builder, config):
  """How the build's frames depart from the videos as they are: a fixed frame size."""
  height, width = builder.info.features['video'].shape[1:3]
  if height is None and width is None:
    return ()
  return (f'frames: TFDS {config} resized every video to {width}x{height} (the published '
          'protocol reads the videos at their own size)',)
