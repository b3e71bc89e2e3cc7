"""Multi-label linear probe and the PASCAL VOC 2007 classification metric (mAP).

Targets are per image and class 1 (positive), -1 (negative) or 0 ("difficult": the image holds
objects of the class only marked difficult), as the VOC2007 devkit's classification ground
truth has them.

AP is the VOC2007 devkit's (`VOCevalcls.m`, `VOCap` of the 2007 edition): images sorted by
decreasing score (a stable sort: tied scores keep the images' order, as MATLAB's sort does),
a positive counts as a true positive, a negative as a false positive, a difficult image as
neither; precision and recall at every rank; then the 11-point interpolated AP

    AP = 1/11 · Σ_{t ∈ {0, 0.1, ..., 1}} max{precision at ranks whose recall ≥ t} (0 if none).

mAP is the mean of the classes' APs. This is not scikit-learn's `average_precision_score`,
which sums precision × recall steps without interpolation (and groups tied scores).

The probe fits one binary StandardScaler + LinearSVC per class (one-vs-rest) on the training
images that are positive or negative for the class (a difficult image is in neither set), C
chosen per class by stratified k-fold cross-validation of that AP when several are given, and
scores each test image by the SVM's decision function averaged over its views.
"""

import numpy as np
from sklearn import model_selection
from sklearn import pipeline as sk_pipeline
from sklearn import preprocessing
from sklearn import svm
from sklearn.utils import parallel

from mmv.evaluators import linear_probe

RECALL_POINTS = np.linspace(0.0, 1.0, 11)


def precision_recall(scores, targets):
  """(precision, recall) at every rank of the images sorted by decreasing score, as the
  devkit computes them (difficult images, target 0, are neither true nor false positives)."""
  scores, targets = np.asarray(scores, np.float64), np.asarray(targets)
  order = np.argsort(-scores, kind='stable')
  tp = np.cumsum(targets[order] > 0)
  fp = np.cumsum(targets[order] < 0)
  positives = max(int((targets > 0).sum()), 1)
  with np.errstate(invalid='ignore'):
    precision = tp / np.maximum(tp + fp, 1e-300)  # 0/0 (difficult first) is 0 below.
  precision = np.where(tp + fp > 0, precision, 0.0)
  return precision, tp / positives


def voc07_ap(scores, targets):
  """The VOC2007 devkit's 11-point AP of one class (`scores` [N], `targets` [N] in 1/0/-1);
  NaN when the class has no positive."""
  targets = np.asarray(targets)
  if not (targets > 0).any():
    return float('nan')
  precision, recall = precision_recall(scores, targets)
  points = [precision[recall >= t].max() if (recall >= t).any() else 0.0
            for t in RECALL_POINTS]
  return float(np.mean(points))


def mean_ap(scores, targets):
  """{'mAP': percent, 'AP': [per class, percent]} of `scores` and `targets` [N, K]."""
  scores, targets = np.asarray(scores), np.asarray(targets)
  if scores.shape != targets.shape or scores.ndim != 2:
    raise ValueError(f'scores {scores.shape} and targets {targets.shape} must be [N, classes]')
  aps = [voc07_ap(scores[:, k], targets[:, k]) for k in range(targets.shape[1])]
  if any(np.isnan(aps)):
    missing = [k for k, ap in enumerate(aps) if np.isnan(ap)]
    raise ValueError(f'classes {missing} have no positive test image: their AP is undefined')
  return {'mAP': float(100.0 * np.mean(aps)), 'AP': [float(100.0 * a) for a in aps]}


def _fit(features, y, rows, c, seed, max_iter, dual):
  """Binary SVM on the clips of images `rows` of [images, clips, D] `features`, y in ±1."""
  num_clips, dim = features.shape[1:]
  x = features[rows].reshape(-1, dim)
  probe = sk_pipeline.make_pipeline(
      preprocessing.StandardScaler(),
      svm.LinearSVC(C=c, max_iter=max_iter, dual=dual, random_state=seed))
  return probe.fit(x, np.repeat(y[rows], num_clips))


def _scores(probe, features):
  num_images, num_clips, dim = features.shape
  return probe.decision_function(features.reshape(-1, dim)).reshape(
      num_images, num_clips).mean(axis=1)


def _validation_ap(features, targets, fold, c, seed, max_iter, dual):
  train, val = fold
  train = train[targets[train] != 0]
  probe = _fit(features, targets, train, c, seed, max_iter, dual)
  return voc07_ap(_scores(probe, features[val]), targets[val])


def _choose_c(features, targets, c_grid, folds, seed, n_jobs, max_iter, dual):
  """(best C, mean validation AP per C) of one class by stratified k-fold CV over images."""
  counts = np.bincount((targets + 1).astype(int), minlength=3)  # -1, 0, 1.
  folds = min(folds, int(counts[2]), int(counts[0]))
  if folds < 2:
    raise ValueError('choosing C by cross-validation needs 2 positive and 2 negative training '
                     'images of each class; give a single C instead')
  splitter = model_selection.StratifiedKFold(folds, shuffle=True, random_state=seed)
  splits = list(splitter.split(np.zeros(len(targets)), targets))
  jobs = [parallel.delayed(_validation_ap)(features, targets, fold, c, seed, max_iter, dual)
          for c in c_grid for fold in splits]
  ap = np.array(parallel.Parallel(n_jobs=n_jobs)(jobs)).reshape(len(c_grid), len(splits))
  cv = np.nanmean(ap, axis=1)
  return float(c_grid[int(np.nanargmax(cv))]), [float(v) for v in cv]


def linear_probe_multilabel(train_features, train_targets, test_features, test_targets, *,
                            c_grid, folds=3, seed=0, n_jobs=-1, max_iter=2000, dual=True,
                            class_names=None):
  """One-vs-rest binary SVMs (see the module doc); {'mAP', 'AP' per class, 'C' per class,
  'cv_ap' per class, counts} in percent."""
  train_features = linear_probe.as_clips(train_features)
  test_features = linear_probe.as_clips(test_features)
  train_targets, test_targets = np.asarray(train_targets), np.asarray(test_targets)
  if train_targets.shape != (train_features.shape[0], test_targets.shape[1]):
    raise ValueError(f'training targets {train_targets.shape} do not match features '
                     f'{train_features.shape} and test targets {test_targets.shape}')
  scores, chosen, cv = [], [], []
  for k in range(train_targets.shape[1]):
    t = train_targets[:, k]
    if not ((t > 0).any() and (t < 0).any()):
      name = class_names[k] if class_names else k
      raise ValueError(f'class {name} needs positive and negative training images')
    c, cv_ap = c_grid[0], None
    if len(c_grid) > 1:
      c, cv_ap = _choose_c(train_features, t, c_grid, folds, seed, n_jobs, max_iter, dual)
    probe = _fit(train_features, t, np.flatnonzero(t != 0), c, seed, max_iter, dual)
    scores.append(_scores(probe, test_features))
    chosen.append(float(c))
    cv.append(cv_ap)
  result = mean_ap(np.stack(scores, axis=1), test_targets)
  return {**result, 'C': chosen, 'c_grid': [float(c) for c in c_grid],
          'cv_ap': cv if len(c_grid) > 1 else None, 'cv_folds': folds if len(c_grid) > 1 else 0,
          'solver': 'liblinear', 'num_classes': int(train_targets.shape[1]),
          'num_train_images': int(train_features.shape[0]),
          'num_test_images': int(test_features.shape[0]),
          'num_difficult_test_labels': int((test_targets == 0).sum())}
