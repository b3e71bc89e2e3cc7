"""Top-k accuracy of class scores, shared by the linear probes and zero-shot classification."""

import numpy as np


def label_columns(labels, classes):
  """Column of each label in a score matrix whose columns are `classes` (sorted); -1 if absent.

  A test label the classifier never saw in training maps to -1 and is never counted correct.
  """
  labels = np.asarray(labels)
  classes = np.asarray(classes)
  columns = np.clip(np.searchsorted(classes, labels), 0, len(classes) - 1)
  return np.where(classes[columns] == labels, columns, -1)


def topk_accuracy(scores, columns, ks=(1, 5)):
  """{'top1': ..., 'top5': ...} in percent for `scores` [N, K] and true `columns` [N].

  A sample is correct at k when its true class is among the k highest scores. Ties count
  against it (pessimistic): a class scoring exactly as high as the true one ranks before it, so
  constant scores give 0, never a lucky 100.
  """
  scores = np.asarray(scores)
  columns = np.asarray(columns)
  if scores.ndim != 2 or columns.shape != scores.shape[:1]:
    raise ValueError(f'scores {scores.shape} and columns {columns.shape} do not match')
  known = columns >= 0
  true_score = np.take_along_axis(scores, np.maximum(columns, 0)[:, None], axis=1)
  rank = np.sum(scores >= true_score, axis=1)  # 1-based, counts the true class itself.
  return {f'top{k}': float(100.0 * np.mean(known & (rank <= k))) for k in ks}
