"""The synthetic dataset (`python -m mmv.data.synthetic`) as a benchmark, used where it is.

Layout: DIR/{train,test}-*-of-*, DIR/vocab.txt and DIR/info.json (written last by the
generator, so its presence marks a complete dataset). Every protocol applies: zero-shot
retrieval on the test split (each clip against its first caption), a linear probe of its 16
classes fitted on the training split and tested on the test split, and zero-shot classification
of the test clips from the class names. Nothing is converted or cached.
"""

import glob
import json
import os

from mmv.benchmarks import benchmark as bm
from mmv.benchmarks import protocols

SPLIT = 'test'
LAYOUT = 'DIR/{train,test}-*-of-*, DIR/info.json (python -m mmv.data.synthetic --output_dir DIR)'


def _side(data_dir, split, info):
  files = tuple(sorted(glob.glob(os.path.join(glob.escape(data_dir), f'{split}-*-of-*'))))
  if not files:
    raise FileNotFoundError(f'no {split}-*-of-* shards in {data_dir!r} (expected {LAYOUT})')
  return bm.Shards(split=split, pattern=os.path.join(data_dir, f'{split}-*-of-*'), files=files,
                   num_clips=int(info['splits'][split]))


def prepare(benchmark, data_dir, cache_dir, splits, options):
  """{'test': Prepared} of the dataset in `data_dir` (cache_dir and options do not apply)."""
  del cache_dir, splits, options
  path = os.path.join(data_dir, 'info.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'no synthetic dataset in {data_dir!r} (expected {LAYOUT})')
  with open(path) as f:
    info = json.load(f)
  return {SPLIT: bm.Prepared(
      benchmark=benchmark.name, split=SPLIT, data_dir=data_dir,
      train=_side(data_dir, 'train', info), test=_side(data_dir, 'test', info),
      class_names=tuple(info['classes']), source='shards', fps=float(info['fps']))}


BENCHMARK = bm.Benchmark(
    name='synthetic', kind='linear', modality='video', splits=(SPLIT,),
    fps=protocols.DEFAULTS['synthetic']['fps'],
    layout=LAYOUT, prepare_fn=prepare, protocols=('retrieval', 'linear', 'zero_shot'))
