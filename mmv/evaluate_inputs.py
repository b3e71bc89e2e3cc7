"""What an evaluation's inputs decide, checked before any feature is computed.

Computing features takes hours on a real benchmark; a protocol block that cannot work, prepared
videos that are not what the block reads, a class name that makes no caption, or training labels
that cross-validation cannot split are known before, from the config and the prepared shards,
and end the evaluation at once with what to change.
"""

import collections

import numpy as np
import tensorflow as tf

from mmv import evaluate_protocol
from mmv import methods
from mmv import inference
from mmv.benchmarks import voc2007
from mmv.data import format as fmt
from mmv.data import records
from mmv.evaluators import zero_shot


def caption_tokens(data_config, captions):
  """Token ids [N, max_words] of zero-shot `captions`; a caption left without a word once the
  stop words are dropped would embed as padding alone, so it is an error naming it."""
  tokens, empty = inference.text_tokens(data_config, captions)
  if empty:
    raise ValueError(f'{len(empty)} zero-shot class captions have no word left once the stop '
                     f'words are dropped: {empty[:5]}; change the protocol\'s '
                     'zero_shot_template or data.stop_words')
  return tokens


def record_labels(data_dir, split, num_classes=0):
  """The label (first class index, -1 if none) of every readable record of `split`, or with
  `num_classes` its multi-hot labels [N, num_classes], read from the records' context (no frame
  is decoded)."""
  context = {fmt.LABEL_INDEX: tf.io.VarLenFeature(tf.int64)}

  def label(record):
    parsed, _ = tf.io.parse_single_sequence_example(record, context)
    indices = parsed[fmt.LABEL_INDEX].values
    if num_classes:
      return tf.reduce_max(tf.one_hot(tf.concat([indices, [-1]], 0), num_classes), axis=0)
    return tf.concat([indices, [-1]], 0)[0]

  files = tf.data.Dataset.from_tensor_slices(records.split_files(data_dir, split))
  # File by file: a shard's unreadable tail ends that shard only (`records`).
  ds = files.flat_map(lambda f: tf.data.TFRecordDataset(f).ignore_errors())
  labels = list(ds.map(label).ignore_errors().as_numpy_iterator())
  if num_classes:
    return np.stack(labels) if labels else np.zeros((0, num_classes))
  return np.asarray(labels, np.int64)


def check_inputs(config, bench, prepared_splits):
  """Clear errors, before any feature is computed, for what the config and the prepared splits
  decide: the protocol block, the frame rate and first seconds the videos were prepared with,
  the training vocabulary, the zero-shot captions, and the training labels of a linear probe
  that chooses C by cross-validation (read from the shards only then: it reads every record)."""
  evaluate_protocol.check_eval_config(config, bench)
  block = evaluate_protocol.protocol(config, bench)
  for prepared in prepared_splits.values():
    evaluate_protocol.check_prepared(config, bench, prepared)
    data = evaluate_protocol.benchmark_data_config(config, bench, prepared)
    if 'zero_shot' in bench.protocols and 'text' in methods.towers(config):  # Else not run.
      caption_tokens(data, zero_shot.class_captions(prepared.class_names,
                                                    block.zero_shot_template))
    if 'linear' in bench.protocols and evaluate_protocol.multi_label(bench):
      _check_multilabel(bench, block, prepared)
    elif 'linear' in bench.protocols and len(block.c) > 1:
      _check_folds(bench, block, prepared)


def _check_multilabel(bench, block, prepared):
  """Each class's binary SVM (`multilabel`) needs positive and negative training images of it,
  2 of each when cross-validation chooses its C, and its AP a positive test image (VOC:
  classes, then their difficult twins)."""
  k = len(prepared.class_names) // 2
  names = prepared.class_names[:k]
  where = f'{bench.name} split {prepared.split}'
  need = 2 if len(block.c) > 1 else 1
  train = voc2007.targets(record_labels(prepared.data_dir, prepared.train.split, 2 * k))
  short = [names[c] for c in range(k)
           if min((train[:, c] > 0).sum(), (train[:, c] < 0).sum()) < need]
  if short:
    why = (f'eval.{bench.name}.c = {tuple(block.c)} chooses C per class by cross-validation, '
           'which needs 2' if need == 2 else 'its SVM needs 1')
    raise ValueError(f'{where}: {why} positive and negative training images of each class; '
                     f'{", ".join(short[:5])} {"have" if len(short) > 1 else "has"} fewer')
  test = voc2007.targets(record_labels(prepared.data_dir, prepared.test.split, 2 * k))
  absent = [names[c] for c in range(k) if not (test[:, c] > 0).any()]
  if absent:
    raise ValueError(f'{where}: no test image of {", ".join(absent[:5])}: its AP (and the '
                     'mAP) is undefined')


def _check_folds(bench, block, prepared):
  """Cross-validation's folds need 2 training videos of each class (`linear_probe`)."""
  where = f'{bench.name} split {prepared.split}'
  labels = record_labels(prepared.data_dir, prepared.train.split)
  if (labels < 0).any():
    raise ValueError(f'{where}: {int((labels < 0).sum())} training videos have no label')
  counts = collections.Counter(labels.tolist())
  if len(counts) < 2:
    raise ValueError(f'{where}: a linear probe needs training videos of 2 classes at least; '
                     f'they are all of class {labels[0] if len(labels) else "none"}')
  single = sorted(k for k, n in counts.items() if n < 2)
  if single:
    names = [prepared.class_names[k] if k < len(prepared.class_names) else str(k)
             for k in single]
    which = (f'class {names[0]} has' if len(names) == 1 else
             f'{len(names)} classes have ({", ".join(names[:5])}{", ..." * (len(names) > 5)})')
    raise ValueError(
        f'{where}: eval.{bench.name}.c = {tuple(block.c)} chooses C by cross-validation, '
        f'which needs 2 training videos of each class; {which} one: give one C '
        f'(--linear_c={block.c[0]:g}) or more training videos')
