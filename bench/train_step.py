"""Steps/s and examples/s of the train step for a config and batch, with MFU where the peak is known.

    python bench/train_step.py --config configs/tiny.py [--config.train.batch_size=64] \
        [--steps 20] [--warmup 3] [--devices 8]

Times the compiled train step alone on a random batch already on the devices (no input
pipeline: see the data benchmarks for that), over all local devices with the config's mesh and
loss. Prints one line per figure and a JSON line at the end. `--devices` fakes that many CPU
devices (CPU only). The vocabulary size comes from the config's dataset when it is there.
"""

import json
import os
import sys
import time

from absl import app
from absl import flags
from ml_collections import config_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file (configs/*.py).',
                                          lock_config=True)
_STEPS = flags.DEFINE_integer('steps', 20, 'Timed steps.')
_WARMUP = flags.DEFINE_integer('warmup', 3, 'Untimed steps after compiling.')
_DEVICES = flags.DEFINE_integer('devices', None, 'Fake CPU devices (CPU only).')
_VOCAB_SIZE = flags.DEFINE_integer('vocab_size', 1000,
                                   'Vocabulary size when the dataset is absent.')
flags.mark_flags_as_required(['config'])


def random_batch(data_config, batch_size, vocab_size, sharding):
  """A batch with the pipeline's shapes, built on the host and split over `sharding`."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from mmv.data import pipeline  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  shapes = pipeline.output_shapes(data_config)
  local = batch_size // jax.process_count()
  batch = {
      'video': rng.uniform(size=(local,) + shapes['video']).astype(np.float32),
      'audio': rng.normal(size=(local,) + shapes['audio']).astype(np.float32),
      'text': rng.integers(2, vocab_size, size=(local,) + shapes['text']).astype(np.int32),
      'text_mask': np.ones((local,) + shapes['text_mask'], np.float32),
  }
  for key in ('audio_mask', 'mask'):
    batch[key] = np.ones((local,), np.float32)
  batch['label'] = np.zeros((local,), np.int32)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def main(argv):
  del argv
  if _DEVICES.value:
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                               f' --xla_force_host_platform_device_count={_DEVICES.value}')
  sys.path.insert(0, ROOT)
  import jax  # pylint: disable=g-import-not-at-top
  from mmv import sharding as shard_lib  # pylint: disable=g-import-not-at-top
  from mmv import throughput  # pylint: disable=g-import-not-at-top
  from mmv import train  # pylint: disable=g-import-not-at-top
  from mmv import train_step  # pylint: disable=g-import-not-at-top
  from mmv.data import pipeline  # pylint: disable=g-import-not-at-top
  from mmv.models import mmv as mmv_model  # pylint: disable=g-import-not-at-top

  config = _CONFIG.value
  mesh = shard_lib.make_mesh(config.mesh)
  train.check_train_config(config, mesh)
  if os.path.exists(pipeline.vocab_path(config.data)):
    model = train_step.create_model(config)
    vocab_size = model.text_backbone.vocab_size
  else:
    vocab_size = _VOCAB_SIZE.value
    model = mmv_model.build_model(config.model, vocab_size=vocab_size)
  tx = train_step.create_optimizer(config)
  batch_size = config.train.batch_size
  batch = random_batch(config.data, batch_size, vocab_size, shard_lib.batch_sharding(mesh))
  abstract = train_step.abstract_train_state(config, model, tx, mesh)
  state = train_step.create_train_state(config, model, tx, mesh, abstract)
  start = time.perf_counter()
  step_fn, flops = train.compile_train_step(config, model, tx, mesh, abstract, batch)
  compile_sec = time.perf_counter() - start
  for _ in range(_WARMUP.value):
    state, metrics = step_fn(state, batch)
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(_STEPS.value):
    state, metrics = step_fn(state, batch)
  jax.block_until_ready((state, metrics))
  seconds = (time.perf_counter() - start) / _STEPS.value

  device = jax.devices()[0]
  peak = throughput.peak_flops(device.device_kind)
  memory = step_fn.memory_analysis()
  result = {
      'device': f'{jax.device_count()} x {device.device_kind}',
      'mesh': dict(mesh.shape),
      'loss': config.loss.implementation,
      'microbatches': config.train.microbatches,
      'batch_size': batch_size,
      'compile_sec': round(compile_sec, 1),
      'step_time_sec': seconds,
      'steps_per_sec': 1 / seconds,
      'examples_per_sec': batch_size / seconds,
      'model_gflops_per_step': flops and flops / 1e9,
      'tflops_per_sec_per_device': flops and flops / seconds / jax.device_count() / 1e12,
      'mfu': flops and peak and flops / seconds / (peak * jax.device_count()),
      'temp_mib_per_device': memory and memory.temp_size_in_bytes / 2**20,
  }
  for key, value in result.items():
    print(f'{key:>28}: {value:.4g}' if isinstance(value, float) else f'{key:>28}: {value}')
  print(json.dumps(result))


if __name__ == '__main__':
  app.run(main)
