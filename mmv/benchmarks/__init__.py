"""Downstream benchmarks read from their official layouts (see the README's Evaluation section).

    from mmv import benchmarks
    bench = benchmarks.get('ucf101')  # protocols linear + zero_shot, modality video, splits 1-3
    for split, prepared in bench.prepare('/data/ucf101').items():
      prepared.data_dir, prepared.train, prepared.test, prepared.class_names

Image benchmarks (voc2007, imagenet, synthetic_images; modality 'image') store each image as
a 1-frame record (`mmv.ingest.images`). `prepare` converts the raw videos (or images) once into
shards under `DIR/.mmv_cache/NAME` (or a given cache directory) and returns, per split, a
directory the pipeline reads with splits 'train' and 'test' (`benchmark.Prepared`), with the
counts of clips written and skipped.
"""

from mmv.benchmarks import audioset
from mmv.benchmarks import esc50
from mmv.benchmarks import hmdb51
from mmv.benchmarks import imagenet
from mmv.benchmarks import kinetics
from mmv.benchmarks import moments_in_time
from mmv.benchmarks import msrvtt
from mmv.benchmarks import synthetic
from mmv.benchmarks import synthetic_images
from mmv.benchmarks import ucf101
from mmv.benchmarks import voc2007
from mmv.benchmarks import youcook2
# The types a caller meets, importable from here.
from mmv.benchmarks.benchmark import Benchmark  # pylint: disable=unused-import
from mmv.benchmarks.benchmark import Options  # pylint: disable=unused-import
from mmv.benchmarks.benchmark import Prepared  # pylint: disable=unused-import
from mmv.benchmarks.benchmark import Shards  # pylint: disable=unused-import

BENCHMARKS = {b.name: b for b in (
    ucf101.BENCHMARK, hmdb51.BENCHMARK, esc50.BENCHMARK, kinetics.BENCHMARK,
    msrvtt.BENCHMARK, youcook2.BENCHMARK, synthetic.BENCHMARK, voc2007.BENCHMARK,
    imagenet.BENCHMARK, synthetic_images.BENCHMARK, audioset.BENCHMARK,
    moments_in_time.BENCHMARK)}


def get(name):
  """The Benchmark called `name`."""
  if name not in BENCHMARKS:
    raise ValueError(f'unknown benchmark {name!r}; known: {sorted(BENCHMARKS)}')
  return BENCHMARKS[name]


def prepare(name, data_dir, cache_dir=None, split=None, **options):
  """`get(name).prepare(...)`: {split: Prepared}."""
  return get(name).prepare(data_dir, cache_dir=cache_dir, split=split, **options)
