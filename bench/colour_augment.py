r"""CPU cost of MMV's colour augmentation in JAX against tf.image's, per clip, in one run.

    python bench/colour_augment.py [--clips 4] [--rounds 5] [--frames 32] [--size 200]

Times, per clip of `frames` x `size` x `size` x 3 float32 values (the paper's training input),
the CPU seconds (user + system of this process, so other jobs on the machine hardly move them)
of: `mmv.data.augment.colour_jitter` jitted on the CPU device; the same ops in tf.image
(adjust_brightness, adjust_saturation, adjust_contrast, adjust_hue, clip: the order DMVR applies
them) in a tf.function called per clip; and, with `--previous FILE`, an earlier version of augment.py (e.g.
`git show COMMIT:mmv/data/augment.py > /tmp/old.py`). Rounds alternate between them; medians
are printed with their min-max.

It also prints the augmentation's FLOPs per clip from XLA's cost analysis beside those of a
TSM-ResNet50 training step (forward + backward, batch 1 of the same clip), lowered, not run.
"""

import importlib.util
import json
import os
import statistics
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mmv.data import augment  # pylint: disable=g-import-not-at-top
from mmv.models import tsm_resnet  # pylint: disable=g-import-not-at-top

_CLIPS = flags.DEFINE_integer('clips', 4, 'Clips per call.')
_ROUNDS = flags.DEFINE_integer('rounds', 5, 'Timed rounds (each calls every variant once).')
_FRAMES = flags.DEFINE_integer('frames', 32, 'Frames per clip.')
_SIZE = flags.DEFINE_integer('size', 200, 'Crop side.')
_PREVIOUS = flags.DEFINE_string('previous', None, 'An earlier augment.py to time beside.')


@tf.function
def tf_jitter(clip, brightness, saturation, contrast, hue):
  """One clip through tf.image's ops (called per clip, as DMVR applies them)."""
  x = tf.image.adjust_saturation(tf.image.adjust_brightness(clip, brightness), saturation)
  x = tf.image.adjust_hue(tf.image.adjust_contrast(x, contrast), hue)
  return tf.clip_by_value(x, 0.0, 1.0)


def cpu_seconds(fn):
  start = time.process_time()
  fn()
  return time.process_time() - start


def tsm_step_flops(frames, size):
  model = tsm_resnet.TSMResNet(width=1)
  video = jax.ShapeDtypeStruct((1, frames, size, size, 3), jnp.float32)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(video.shape),
                                                train=False))

  def step(variables, video):
    def loss(params):
      out, _ = model.apply({**variables, 'params': params}, video, train=True,
                           mutable=['batch_stats'])
      return jnp.sum(out ** 2)
    grads = jax.grad(loss)(variables['params'])
    return optax.global_norm(grads)

  return jax.jit(step).lower(variables, video).cost_analysis()['flops']


def main(argv):
  del argv
  rng = np.random.default_rng(0)
  shape = (_CLIPS.value, _FRAMES.value, _SIZE.value, _SIZE.value, 3)
  video = rng.uniform(0, 1, shape).astype(np.float32)
  colour = np.stack([rng.uniform(-32 / 255, 32 / 255, shape[0]),
                     rng.uniform(0.6, 1.4, shape[0]), rng.uniform(0.6, 1.4, shape[0]),
                     rng.uniform(-0.2, 0.2, shape[0])], axis=1).astype(np.float32)
  variants = {'jax': jax.jit(augment.colour_jitter)}
  if _PREVIOUS.value:
    spec = importlib.util.spec_from_file_location('previous_augment', _PREVIOUS.value)
    previous = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(previous)
    variants['jax_previous'] = jax.jit(previous.colour_jitter)
  video_d, colour_d = jax.device_put(video), jax.device_put(colour)
  calls = {name: (lambda f=f: f(video_d, colour_d).block_until_ready())
           for name, f in variants.items()}
  clips_t = [tf.constant(clip) for clip in video]
  draws_t = [[tf.constant(v) for v in draw] for draw in colour]
  calls['tf.image'] = lambda: np.stack([tf_jitter(clip, *draw).numpy()
                                        for clip, draw in zip(clips_t, draws_t)])
  outputs = {name: np.asarray(fn()) for name, fn in calls.items()}
  times = {name: [] for name in calls}
  for _ in range(_ROUNDS.value):
    for name, fn in calls.items():
      times[name].append(cpu_seconds(fn) / shape[0])
  result = {'clip': list(shape[1:]), 'cores': os.cpu_count(), 'cpu_s_per_clip': {
      name: {'median': statistics.median(t), 'min': min(t), 'max': max(t)}
      for name, t in times.items()}}
  tf_median = result['cpu_s_per_clip']['tf.image']['median']
  result['ratio_to_tf_image'] = {name: v['median'] / tf_median
                                 for name, v in result['cpu_s_per_clip'].items()}
  result['max_abs_difference_to_tf_image'] = {
      name: float(np.abs(out - outputs['tf.image']).max()) for name, out in outputs.items()}
  one_clip = jax.ShapeDtypeStruct((1,) + shape[1:], jnp.float32)
  one_colour = jax.ShapeDtypeStruct((1, 4), jnp.float32)
  colour_flops = jax.jit(augment.colour_jitter).lower(one_clip, one_colour).cost_analysis()['flops']
  step_flops = tsm_step_flops(_FRAMES.value, _SIZE.value)
  result['flops_per_clip'] = {'colour_jitter': colour_flops, 'tsm_resnet50_train_step': step_flops,
                              'fraction': colour_flops / step_flops}
  print(json.dumps(result, indent=1))


if __name__ == '__main__':
  app.run(main)
