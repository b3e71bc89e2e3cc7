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
from mmv import inference
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


def record_labels(data_dir, split):
  """The label (first class index, -1 if none) of every readable record of `split`, read from
  the records' context (no frame is decoded)."""
  context = {fmt.LABEL_INDEX: tf.io.VarLenFeature(tf.int64)}

  def label(record):
    parsed, _ = tf.io.parse_single_sequence_example(record, context)
    return tf.concat([parsed[fmt.LABEL_INDEX].values, [-1]], 0)[0]

  files = tf.data.Dataset.from_tensor_slices(records.split_files(data_dir, split))
  # File by file: a shard's unreadable tail ends that shard only (`records`).
  ds = files.flat_map(lambda f: tf.data.TFRecordDataset(f).ignore_errors())
  return np.fromiter(ds.map(label).ignore_errors().as_numpy_iterator(), np.int64)


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
    if 'zero_shot' in bench.protocols:
      caption_tokens(data, zero_shot.class_captions(prepared.class_names,
                                                    block.zero_shot_template))
    if 'linear' in bench.protocols and len(block.c) > 1:
      _check_folds(bench, block, prepared)


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
