"""Linear probe on frozen features: StandardScaler + linear SVM in scikit-learn.

Features come as [num_videos, num_clips, D]. On the training split the clips are the N augmented
passes (10 in the paper) and every clip is a training sample carrying its video's label; on the
test split they are the 10 evenly spaced central-crop clips, and the SVM decision scores are
averaged over a video's clips before top-1 / top-5 are read off. [num_videos, D] means one clip.

The classifier is `LinearSVC`: one-vs-rest, squared hinge, L2 penalty, solved by liblinear,
in the dual (`dual=True`, scikit-learn's default until 1.5, what DeepMind's released UCF101
script ran with), in the primal (`dual=False`), or as today's default 'auto' picks: the primal
when there are more samples than feature dimensions. Both reach the same optimum; `max_iter`
bounds the solver's iterations. That is the linear SVM of the paper; `SVC(kernel='linear')` would
solve the same kind of problem one-vs-one in O(samples²) and does not scale to 95k clips.

C is chosen by k-fold cross-validation on the training split over a log grid. Folds are drawn
over videos (stratified by label) and expanded to their clips, so the augmented clips of one
video never sit on both sides of a fold; a validation video is scored like a test video, by its
clip-averaged decision scores. `jax_linear.py` solves the same objective in JAX for large sets.
"""

import numpy as np
from sklearn import model_selection
from sklearn import pipeline as sk_pipeline
from sklearn import preprocessing
from sklearn import svm
from sklearn.utils import parallel

from mmv.evaluators import accuracy

DEFAULT_C_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


def as_clips(features):
  """`features` as [num_videos, num_clips, D]; a [num_videos, D] array is one clip per video."""
  features = np.asarray(features)
  if features.ndim == 2:
    return features[:, None]
  if features.ndim != 3:
    raise ValueError(f'features must be [videos, clips, D] or [videos, D], got {features.shape}')
  return features


def video_folds(labels, num_folds, seed=0):
  """[(train_videos, val_videos)] index arrays of a k-fold split over videos, stratified.

  Uses fewer folds when the rarest class has fewer than `num_folds` videos, so that every class
  is present in every training fold.
  """
  _, counts = np.unique(labels, return_counts=True)
  num_folds = min(num_folds, int(counts.min()))
  if num_folds < 2:
    raise ValueError('choosing C by cross-validation needs 2 training videos of each class; '
                     'give a single C instead')
  splitter = model_selection.StratifiedKFold(num_folds, shuffle=True, random_state=seed)
  return list(splitter.split(np.zeros(len(labels)), labels))


def clip_rows(videos, num_clips):
  """Rows of the clips of `videos` in the [num_videos * num_clips, D] flattening."""
  return (np.asarray(videos)[:, None] * num_clips + np.arange(num_clips)).reshape(-1)


def _make_svm(c, seed, max_iter, dual):
  return sk_pipeline.make_pipeline(
      preprocessing.StandardScaler(),
      svm.LinearSVC(C=c, max_iter=max_iter, dual=dual, random_state=seed))


def _fit(features, labels, videos, c, seed, max_iter, dual):
  """The SVM fitted on every clip of `videos` (sorted rows of [videos, clips, D] `features`)."""
  num_videos, num_clips, dim = features.shape
  flat = features.reshape(num_videos * num_clips, dim)
  if len(videos) < num_videos:  # A fold: copy its rows; the full set is used as it is.
    flat = flat[clip_rows(videos, num_clips)]
  return _make_svm(c, seed, max_iter, dual).fit(flat, np.repeat(labels[videos], num_clips))


def clip_averaged_scores(probe, features):
  """Decision scores [num_videos, num_classes] of `probe`, averaged over each video's clips."""
  num_videos, num_clips, dim = features.shape
  scores = probe.decision_function(features.reshape(num_videos * num_clips, dim))
  if scores.ndim == 1:  # Two classes: one score, positive for classes_[1].
    scores = np.stack([-scores, scores], axis=1)
  return scores.reshape(num_videos, num_clips, -1).mean(axis=1)


def _validation_top1(features, labels, fold, c, seed, max_iter, dual):
  train_videos, val_videos = fold
  probe = _fit(features, labels, train_videos, c, seed, max_iter, dual)
  scores = clip_averaged_scores(probe, features[val_videos])
  columns = accuracy.label_columns(labels[val_videos], probe.classes_)
  return accuracy.topk_accuracy(scores, columns, ks=(1,))['top1']


def choose_c(features, labels, c_grid, *, folds=3, seed=0, n_jobs=-1, max_iter=10000,
             dual='auto'):
  """(best C, mean validation top-1 per C, number of folds) by k-fold CV over videos.

  Ties go to the earlier grid value: with an ascending grid, the stronger regularisation.
  """
  features, labels = as_clips(features), np.asarray(labels)
  splits = video_folds(labels, folds, seed)
  jobs = [parallel.delayed(_validation_top1)(features, labels, fold, c, seed, max_iter, dual)
          for c in c_grid for fold in splits]
  top1 = np.array(parallel.Parallel(n_jobs=n_jobs)(jobs)).reshape(len(c_grid), len(splits))
  cv_top1 = top1.mean(axis=1)
  return float(c_grid[int(np.argmax(cv_top1))]), [float(v) for v in cv_top1], len(splits)


def probe_result(scores, classes, train_shape, test_shape, train_labels, test_labels, *,
                 c, c_grid, cv_top1, cv_folds, solver):
  """The result dict shared by the scikit-learn and the JAX probes."""
  columns = accuracy.label_columns(test_labels, classes)
  return {
      **accuracy.topk_accuracy(scores, columns, ks=(1, 5)),
      'C': float(c),
      'c_grid': [float(v) for v in c_grid],
      'cv_top1': cv_top1,
      'cv_folds': cv_folds,
      'solver': solver,
      'num_classes': int(len(np.union1d(train_labels, test_labels))),
      'num_train_videos': int(train_shape[0]),
      'num_train_clips': int(train_shape[0] * train_shape[1]),
      'num_test_videos': int(test_shape[0]),
      'num_test_clips': int(test_shape[0] * test_shape[1]),
  }


def linear_probe(train_features, train_labels, test_features, test_labels, *,
                 c_grid=DEFAULT_C_GRID, c=None, folds=3, seed=0, n_jobs=-1, max_iter=10000,
                 dual='auto'):
  """Fits the SVM on the training split, returns top-1/top-5 (percent) on the test split.

  Args:
    train_features: [num_videos, num_clips, D] (or [num_videos, D]) training features.
    train_labels: [num_videos] integer labels.
    test_features: [num_test_videos, num_test_clips, D] (or [num_test_videos, D]).
    test_labels: [num_test_videos].
    c_grid: C values tried by cross-validation; a single value skips it.
    c: a fixed C, skipping cross-validation (re-running another C on cached features).
    folds: cross-validation folds (over videos).
    seed: fold shuffling and liblinear's seed.
    n_jobs: parallel (C, fold) fits; -1 uses every core.
    max_iter: liblinear iterations.
    dual: LinearSVC's `dual`: True, False or 'auto'.

  Returns:
    {'top1', 'top5', 'C' (the one used), 'c_grid', 'cv_top1' (mean validation top-1 per grid
    value, None without CV), 'cv_folds' (0 without CV), 'solver', 'num_classes',
    'num_train_videos', 'num_train_clips', 'num_test_videos', 'num_test_clips'}.
  """
  train_features, test_features = as_clips(train_features), as_clips(test_features)
  train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
  if len(np.unique(train_labels)) < 2:
    raise ValueError(f'a linear probe needs at least 2 classes, got {np.unique(train_labels)}')
  cv_top1, cv_folds = None, 0
  if c is None and len(c_grid) == 1:
    c = c_grid[0]
  elif c is None:
    c, cv_top1, cv_folds = choose_c(train_features, train_labels, c_grid, folds=folds,
                                    seed=seed, n_jobs=n_jobs, max_iter=max_iter, dual=dual)
  probe = _fit(train_features, train_labels, np.arange(len(train_labels)), c, seed, max_iter,
               dual)
  scores = clip_averaged_scores(probe, test_features)
  return probe_result(scores, probe.classes_, train_features.shape, test_features.shape,
                      train_labels, test_labels, c=c, c_grid=c_grid, cv_top1=cv_top1,
                      cv_folds=cv_folds, solver='liblinear')
