"""The synthetic dataset's clips as still images: the demo's image benchmark.

Layout: the synthetic dataset (`python -m mmv.data.synthetic`, see `synthetic`). Each clip
gives one image, its first frame (its JPEG bytes as stored, 40x40 by default), with the clip's
class (shape x direction, 16 classes); the training clips make the training images, the test
clips the test images. One frame shows the shape and where it is, not where it goes: the
direction is only hinted by the shape's distance from the edge it starts at, so a perfect
image model stays below 100 % (the shape alone gives 25 %; chance is 6.25 %). The images are
written once, as 1-frame records, into the cache (`DIR/.mmv_cache/synthetic_images` or the
given cache directory), then read as any image benchmark.
"""

import json
import math
import os

from mmv.benchmarks import benchmark as bm
from mmv.benchmarks import cache
from mmv.benchmarks import synthetic
from mmv.data import format as fmt
from mmv.data import records
from mmv.ingest import convert
from mmv.ingest import images
from mmv.ingest import media

SPLIT = 'test'
FRAME = 0  # The frame of each clip that makes its image.
LAYOUT = synthetic.LAYOUT


def _first_frames(data_dir, split, class_names):
  """(ClipSpec, Clip of one frame) of every clip of `split`, in file order."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  context = {fmt.LABEL_INDEX: tf.io.VarLenFeature(tf.int64),
             fmt.FILENAME: tf.io.FixedLenFeature([], tf.string)}
  sequence = {fmt.IMAGE: tf.io.FixedLenSequenceFeature([], tf.string)}
  ds = tf.data.TFRecordDataset(records.split_files(data_dir, split))
  for record in ds.as_numpy_iterator():
    ctx, seq = tf.io.parse_single_sequence_example(record, context, sequence)
    labels = [class_names[int(i)] for i in tf.sparse.to_dense(ctx[fmt.LABEL_INDEX]).numpy()]
    spec = bm.clip(ctx[fmt.FILENAME].numpy().decode(), None, labels=labels)
    frames = seq[fmt.IMAGE].numpy()
    if len(frames) <= FRAME:
      yield spec, f'the clip has {len(frames)} frames'
    else:
      yield spec, media.Clip(jpegs=[bytes(frames[FRAME])], waveform=None, start=0.0,
                             end=1.0 / images.FPS)


def prepare(benchmark, data_dir, cache_dir, splits, options):
  """{'test': Prepared}: the first frames of the synthetic dataset in `data_dir`, written once
  into the cache as 1-frame records."""
  del splits
  path = os.path.join(data_dir, 'info.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'no synthetic dataset in {data_dir!r} (expected {LAYOUT})')
  with open(path) as f:
    info = json.load(f)
  names = tuple(info['classes'])
  root = cache.cache_dir_for(benchmark.name, data_dir, cache_dir)
  parts_dir = os.path.join(root, cache.PARTS)
  os.makedirs(parts_dir, exist_ok=True)
  cache.write_text_if_changed(os.path.join(parts_dir, fmt.LABEL_MAP), names)
  markers = {}
  for role in bm.ROLES:
    files = records.split_files(data_dir, role)  # An error naming the split if none.
    key = cache.digest({'info': info, 'frame': FRAME, 'files': [
        [os.path.basename(p), os.path.getsize(p)] for p in files]})
    count = int(info['splits'][role])

    def write(role=role, count=count):
      report = convert.write_shards(
          _first_frames(data_dir, role, names), parts_dir, name=role,
          num_shards=max(1, math.ceil(count / options.clips_per_shard)), labels=names,
          fps=images.FPS, sample_rate=options.sample_rate, total=count,
          progress=options.progress)
      return report, images.FPS

    markers[role] = cache.write_part(parts_dir, role, key, write)
  return {SPLIT: cache.link_prepared(benchmark, root, SPLIT, {r: [r] for r in bm.ROLES},
                                     markers, names, 'shards', images.FPS)}


BENCHMARK = bm.Benchmark(name='synthetic_images', kind='linear', modality='image',
                         splits=(SPLIT,), fps=images.FPS, layout=LAYOUT, prepare_fn=prepare)
