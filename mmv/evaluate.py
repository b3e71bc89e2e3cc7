"""The evaluation binary: restores a checkpoint and measures it on the dataset's test split.

    python -m mmv.evaluate --config configs/tiny.py --workdir runs/demo \
        [--step N] [--output runs/demo/eval.json]

Reports zero-shot retrieval between each test clip and its first caption in S_vat
(`t2v_*`, `v2t_*`: R@1/5/10 in percent, median and mean rank) and a linear probe on the class
labels from frozen video backbone features (`linear_top1` in percent on the test split, the SVM
fitted on the training split with C chosen by cross-validation).
"""

import json
import os

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags
import numpy as np
import tensorflow as tf

from mmv import checkpoint as ckpt_lib
from mmv import losses
from mmv import sharding as shard_lib
from mmv import train as train_lib
from mmv.data import pipeline
from mmv.data import stream as data_stream
from mmv.evaluators import linear_probe
from mmv.evaluators import retrieval

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file (configs/*.py).',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Training workdir holding checkpoints/.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step; the latest when left out.')
_OUTPUT = flags.DEFINE_string('output', None, 'JSON file for the results.')
flags.mark_flags_as_required(['config', 'workdir'])


def restore(config, workdir, step=None):
  """(model, variables, step) of the checkpoint `step` (latest by default) in `workdir`."""
  mesh = shard_lib.make_mesh(config.mesh)
  model = train_lib.create_model(config)
  tx = train_lib.create_optimizer(config)
  abstract = train_lib.abstract_train_state(config, model, tx, mesh)
  signature = ckpt_lib.variable_signature(
      {'params': abstract.params, 'batch_stats': abstract.batch_stats})
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), read_only=True)
  state, meta = checkpointer.restore(abstract, signature=signature, step=step)
  checkpointer.close()
  return model, state.variables(), meta['step'], mesh


def _embed_fn(model, mesh):

  def embed(variables, batch):
    features, _, video_vt = model.apply(variables, batch['video'], method=model.embed_video)
    text_vt = model.apply(variables, batch['text'][:, 0], method=model.embed_text)
    return {'features': features, 'video': losses.l2_normalize(video_vt),
            'text': losses.l2_normalize(text_vt)}

  # The variables keep the shardings they were restored onto (config.mesh.param_rules).
  return jax.jit(embed, out_shardings=shard_lib.replicated(mesh))


def extract(config, model, variables, mesh, split):
  """Embeddings, features and labels of every example of `split`, in order, none repeated,
  and the number of records that could not be read.

  With `data.num_test_clips` > 1 an example's video features and embeddings are the mean over
  its clips (the embedding normalised again), and its text that of its first clip.
  """
  batch_size = config.eval.batch_size
  shard_lib.check_batch_size(batch_size, mesh, 'eval.batch_size')
  if jax.process_count() > 1:
    raise NotImplementedError('run the evaluation binary as a single process')
  stream = data_stream.eval_stream(config.data, split, batch_size=batch_size)
  embed = _embed_fn(model, mesh)
  clips = config.data.num_test_clips
  outputs = []
  for batch in pipeline.global_batches(stream, shard_lib.batch_sharding(mesh), config.data):
    out = jax.device_get(embed(variables, batch))
    out.update(label=np.asarray(batch['label']), mask=np.asarray(batch['mask']))
    out = {k: v.reshape((-1, clips) + v.shape[1:]) for k, v in out.items()}
    keep = out['mask'][:, 0] > 0
    video = out['video'].mean(1)
    outputs.append({'features': out['features'].mean(1)[keep],
                    'video': (video / np.linalg.norm(video, axis=-1, keepdims=True))[keep],
                    'text': out['text'][:, 0][keep], 'label': out['label'][:, 0][keep]})
  return {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}, stream.skipped


def evaluate(config, workdir, step=None):
  """All metrics of the checkpoint as a flat dict."""
  model, variables, step, mesh = restore(config, workdir, step)
  test, test_skipped = extract(config, model, variables, mesh, config.data.test_split)
  train, train_skipped = extract(config, model, variables, mesh, config.data.train_split)
  results = {'step': int(step)}
  results.update(retrieval.retrieval_metrics(test['text'], test['video']))
  probe = linear_probe.linear_probe(
      train['features'], train['label'], test['features'], test['label'],
      c_grid=tuple(config.eval.linear_c), seed=config.seed)
  results.update(linear_top1=probe['top1'], linear_top5=probe['top5'], linear_C=probe['C'],
                 num_classes=probe['num_classes'])
  results['num_train_clips'] = int(len(train['label']))
  results['num_test_clips'] = int(len(test['label']))
  results['data_skipped'] = test_skipped + train_skipped
  return results


def format_table(results):
  """A two-column text table of the metrics."""
  width = max(len(k) for k in results)
  lines = [f'{"metric":<{width}}  value', f'{"-" * width}  -----']
  for k, v in results.items():
    lines.append(f'{k:<{width}}  {v:.2f}' if isinstance(v, float) else f'{k:<{width}}  {v}')
  return '\n'.join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  tf.config.set_visible_devices([], 'GPU')
  logging.set_verbosity(logging.WARNING)
  results = evaluate(_CONFIG.value, _WORKDIR.value, _STEP.value)
  print(format_table(results), flush=True)
  if _OUTPUT.value:
    os.makedirs(os.path.dirname(os.path.abspath(_OUTPUT.value)), exist_ok=True)
    with open(_OUTPUT.value, 'w') as f:
      json.dump(results, f, indent=1)
    print(f'wrote {_OUTPUT.value}')


if __name__ == '__main__':
  app.run(main)
