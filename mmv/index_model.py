"""The model an index is made with: a checkpoint, embedding by a retrieval protocol block.

An index embeds as the retrieval benchmarks evaluate: the clip settings of a protocol block of
the run's config (`config.eval.NAME`, see `mmv.benchmarks.protocols`): frame rate, frames per
clip and their stride, short side and central crop. By default the block of the benchmark the
run's data belongs to: `synthetic` for a run trained on the synthetic dataset (its data
directory holds the dataset's info.json), else `msrvtt` (the published zero-shot retrieval
protocol: 32 frames at stride 2 from 25 fps, short side 224, central 224 crop; YouCook2's is
the same). `--protocol NAME` names another. The index records the block's name and fields.

The model's identity (what an index can only be extended with) is the checkpoint (workdir,
step and its modification time: a step trained again is another model), the model as it
computes, the input settings and the protocol.
"""

import copy
import json
import os

from mmv import inference

# The clip fields of a protocol block that decide what a window is.
PROTOCOL_FIELDS = ('fps', 'num_frames', 'frame_stride', 'min_resize', 'crop_size',
                   'clip_offsets')
DEFAULT = 'msrvtt'
SYNTHETIC = 'synthetic'


def retrieval_protocols(config):
  """Names of the run's protocol blocks that have clip fields and a video crop."""
  return sorted(k for k, v in config.eval.items()
                if hasattr(v, 'keys') and all(f in v for f in PROTOCOL_FIELDS))


def default_protocol(config):
  """`synthetic` for a run on the synthetic dataset, else `msrvtt`."""
  info = os.path.join(str(config.data.data_dir), 'info.json')
  if os.path.exists(info):
    try:
      with open(info) as f:
        if 'classes' in json.load(f):
          return SYNTHETIC
    except (OSError, ValueError):
      pass
  return DEFAULT


def protocol_block(config, name):
  """{field: value} of protocol block `name` of the run (its clip fields)."""
  names = retrieval_protocols(config)
  if name not in names:
    raise ValueError(f'no protocol block {name!r} with clip settings in the config (it has '
                     f'{", ".join(names)})')
  block = config.eval[name]
  return json.loads(json.dumps({k: block[k] for k in PROTOCOL_FIELDS}))


def with_protocol(config, block):
  """`config` whose data section reads clips as `block` says."""
  c = copy.deepcopy(config)
  with c.unlocked():  # `clip_offsets` is a field of evaluation's data configs only.
    for k in PROTOCOL_FIELDS:
      c.data[k] = type(c.data[k])(block[k]) if k in c.data else block[k]
  return c


def load(workdir, step=None, config=None, *, protocol=None, dtype='float32', short_side=None):
  """(inference.Model embedding by the protocol block, {'name', fields...} of the block)."""
  base = inference.load(workdir, step, config, dtype=dtype)
  name = protocol or default_protocol(base.config)
  block = protocol_block(base.config, name)
  model = inference.Model(with_protocol(base.config, block), workdir, base.step,
                          short_side=short_side)
  return model, {'name': name, **block}


def checkpoint_mtime(workdir, step):
  """Modification time (seconds) of checkpoint `step`'s directory."""
  path = os.path.join(os.path.abspath(workdir), 'checkpoints', str(step))
  return os.stat(path).st_mtime


def identity(model, protocol):
  """What tells this model's index rows from another's, JSON-ready."""
  return {**model.identity(), 'checkpoint_mtime': checkpoint_mtime(model.workdir, model.step),
          'protocol': protocol}


def load_recorded(settings, workdir=None):
  """The model an index's `settings` (index.json) records; `workdir` where the run moved."""
  recorded = settings['model']
  model = inference.load(workdir or recorded['workdir'], recorded['step'],
                         inference.config_from_dict(settings['config']),
                         dtype=recorded['model']['dtype'], short_side=recorded['short_side'])
  return model
