"""Compiled inference forward time of a backbone on inputs of the paper's size.

    .venv/bin/python bench/forward.py --name s3d_g [--batch 1] [--dtype float32] [--runs 5]

Prints one JSON line: compile time, and the median wall time of `runs` calls of the compiled
forward pass (BatchNorm in inference mode) after a warm-up call. Weights are random (the time
does not depend on them), drawn on the host so the measurement does not wait for XLA to compile
the initialisers.
"""

import functools
import json
import time

from absl import app
from absl import flags
import jax
import numpy as np

from mmv.models import mmv as mmv_model
from mmv.models import summary

_NAME = flags.DEFINE_string('name', 's3d_g', 'Backbone (see mmv.models.summary).')
_BATCH = flags.DEFINE_integer('batch', 1, 'Clips (or spectrograms) per call.')
_DTYPE = flags.DEFINE_enum('dtype', 'float32', sorted(mmv_model.DTYPES), 'Compute dtype.')
_RUNS = flags.DEFINE_integer('runs', 5, 'Timed calls.')


def random_variables(abstract, seed=0):
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda s: (rng.standard_normal(s.shape) / np.sqrt(max(1, np.prod(s.shape[:-1])))
                 ).astype(s.dtype), abstract)


def main(argv):
  del argv
  name = _NAME.value
  video = name in mmv_model.VIDEO_BACKBONES
  table = mmv_model.VIDEO_BACKBONES if video else mmv_model.AUDIO_BACKBONES
  module = table[name](dtype=mmv_model.DTYPES[_DTYPE.value])
  shape = (_BATCH.value,) + (summary.VIDEO_SHAPE if video else summary.AUDIO_SHAPE)[1:]
  x = np.random.default_rng(1).random(shape, np.float32)
  abstract = jax.eval_shape(functools.partial(module.init, train=False), jax.random.key(0), x)
  variables = jax.device_put(random_variables(abstract))
  start = time.perf_counter()
  forward = jax.jit(functools.partial(module.apply, train=False)).lower(variables, x).compile()
  compile_s = time.perf_counter() - start
  jax.block_until_ready(forward(variables, x))
  times = []
  for _ in range(_RUNS.value):
    start = time.perf_counter()
    jax.block_until_ready(forward(variables, x))
    times.append(time.perf_counter() - start)
  print(json.dumps({'name': name, 'input': list(shape), 'dtype': _DTYPE.value,
                    'device': jax.devices()[0].device_kind, 'compile_s': round(compile_s, 2),
                    'forward_s': round(float(np.median(times)), 3), 'runs': _RUNS.value}))


if __name__ == '__main__':
  app.run(main)
