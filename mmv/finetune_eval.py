"""The test of a fine-tuned model: its class scores on the test split of the benchmark it was
fine-tuned on, `finetune.test_clips` evenly spaced clips × `finetune.test_crops` crops per
video, softmax scores averaged; top-1 / top-5 in percent, in a record `mmv.evaluate`'s readers
show (`mmv.evaluators.report`).

One process (all of its host's devices), as `mmv.evaluate`: the evaluation pipeline reads each
test video once per crop position (`data.crop_position`), in file order.
"""

import copy

import jax
import numpy as np

from mmv import finetune_protocol
from mmv import inference
from mmv.evaluators import accuracy
from mmv.evaluators import features as features_lib
from mmv.evaluators import report
from mmv.methods import finetune as ft_method


def make_score_fn(model):
  """jit(variables, batch) → {'features': softmax class scores [clips, classes]} (under the
  key the feature extraction keeps per clip)."""

  def scores(variables, batch):
    logits = model.apply(variables, batch['video'], method=model.classify)
    return {'features': jax.nn.softmax(logits, axis=-1)}

  return jax.jit(scores)


def test_data(config, position):
  """The run's data config reading the test split: `test_clips` clips a video, no
  augmentation, crops at `position`."""
  d = copy.deepcopy(config.data)
  with d.unlocked():
    d.num_test_clips = config.finetune.test_clips
    d.crop_position = position
    d.random_flip = d.color_augment = False
    d.scale_jitter = (1.0, 1.0)
  return d


def test_scores(config, workdir, step):
  """(scores float32 [videos, classes] averaged over clips and crops, labels [videos], records
  that failed to decode) of checkpoint `step` of the fine-tuning run in `workdir`."""
  (model, variables, mesh), _ = inference.restore(config, workdir, step)
  score_fn = make_score_fn(model)
  clips = config.finetune.test_clips
  batch = features_lib.videos_per_batch(config.eval.batch_size, clips, mesh.devices.size,
                                        10**9)
  per_crop, labels, skipped = [], None, 0
  for position in ft_method.crop_positions(config):
    arrays, failed = features_lib.extract(test_data(config, position), config.data.test_split,
                                          score_fn, variables, mesh, batch_size=batch)
    skipped = max(skipped, failed)
    if labels is not None and not np.array_equal(labels, arrays['label']):
      raise ValueError('the test passes of the crops read different videos (a record fails '
                       'for some clips only); set data.strict to find it')
    labels = arrays['label']
    per_crop.append(np.asarray(arrays['features']))
  # [crops, videos, clips, classes] → the mean over crops and clips.
  return np.mean(np.stack(per_crop), axis=(0, 2)), labels, skipped


def metrics(scores, labels):
  """{'finetune_top1', 'finetune_top5'} in percent (a video without a label counts wrong)."""
  columns = accuracy.label_columns(labels, np.arange(scores.shape[1]))
  result = accuracy.topk_accuracy(scores, columns, ks=(1, 5))
  return {f'finetune_{k}': v for k, v in result.items()}


def evaluate(config, workdir, step, prepared):
  """The record of the fine-tuned checkpoint `step` of `workdir` on `prepared`'s test split."""
  scores, labels, failed = test_scores(config, workdir, step)
  listed = prepared.test.num_listed
  result = metrics(scores, labels)
  result['test_videos'] = int(len(labels))
  protocol = finetune_protocol.settings(config)
  split = str(prepared.split)
  protocol.update(
      videos_listed={split: {'test': listed}}, videos_read={split: {'test': int(len(labels))}},
      videos_skipped={split: {'test': listed - int(len(labels))}},
      records_failed=int(failed), prepared={split: prepared.summary()})
  return report.make_record(prepared.benchmark, step, config.model.video_backbone, protocol,
                            {split: result})
