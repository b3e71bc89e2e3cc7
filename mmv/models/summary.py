"""Parameter count and output size of a backbone at the paper's size, from shapes alone.

    python -m mmv.models.summary s3d_g
    {"name": "s3d_g", "params": 9162704, "output_dim": 1024}

`jax.eval_shape` traces the network without compiling or allocating it, so this is instant even
for TSM-ResNet50x2. Names are those of `VIDEO_BACKBONES` and `AUDIO_BACKBONES` in mmv.models.mmv.
"""

import functools
import json
import math

from absl import app
from absl import logging
import jax

from mmv.models import mmv as mmv_model

# One example at the paper's input size: 32 frames of 200x200, 3.2 s of 48 kHz log-mel.
VIDEO_SHAPE = (1, 32, 200, 200, 3)
AUDIO_SHAPE = (1, 149, 80, 1)


def summary(name):
  """{'name', 'params', 'output_dim'} of backbone `name`."""
  if name in mmv_model.VIDEO_BACKBONES:
    module, shape = mmv_model.VIDEO_BACKBONES[name](), VIDEO_SHAPE
  elif name in mmv_model.AUDIO_BACKBONES:
    module, shape = mmv_model.AUDIO_BACKBONES[name](), AUDIO_SHAPE
  else:
    names = sorted(mmv_model.VIDEO_BACKBONES) + sorted(mmv_model.AUDIO_BACKBONES)
    raise ValueError(f'unknown backbone {name!r}; choose from {names}')
  x = jax.ShapeDtypeStruct(shape, jax.numpy.float32)
  variables = jax.eval_shape(functools.partial(module.init, train=False), jax.random.key(0), x)
  out = jax.eval_shape(functools.partial(module.apply, train=False), variables, x)
  params = sum(math.prod(p.shape) for p in jax.tree.leaves(variables['params']))
  return {'name': name, 'params': params, 'output_dim': out.shape[-1]}


def main(argv):
  if len(argv) != 2:
    raise app.UsageError('usage: python -m mmv.models.summary NAME')
  logging.set_verbosity(logging.WARNING)  # No backend-probing lines around the JSON.
  print(json.dumps(summary(argv[1])))


if __name__ == '__main__':
  app.run(main)
