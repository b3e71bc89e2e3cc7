"""Linear probe on frozen features: StandardScaler + linear SVM, C chosen by cross-validation."""

import numpy as np
from sklearn import model_selection
from sklearn import pipeline as sk_pipeline
from sklearn import preprocessing
from sklearn import svm


def linear_probe(train_features, train_labels, test_features, test_labels, *,
                 c_grid=(1e-2, 1e-1, 1.0, 10.0), folds=3, seed=0):
  """Fits on the training features and returns top-1 (percent) on the test features."""
  classes = np.unique(train_labels)
  if len(classes) < 2:
    raise ValueError(f'a linear probe needs at least 2 classes, got {classes.tolist()}')
  probe = sk_pipeline.make_pipeline(
      preprocessing.StandardScaler(), svm.LinearSVC(max_iter=10000, random_state=seed))
  if len(c_grid) == 1:
    search = probe.set_params(linearsvc__C=c_grid[0]).fit(train_features, train_labels)
    best_c = c_grid[0]
  else:
    folds = min(folds, np.bincount(np.searchsorted(classes, train_labels)).min())
    if folds < 2:
      raise ValueError('choosing C by cross-validation needs 2 training examples of each '
                       'class; give a single C instead')
    search = model_selection.GridSearchCV(
        probe, {'linearsvc__C': list(c_grid)},
        cv=model_selection.StratifiedKFold(folds, shuffle=True, random_state=seed))
    search.fit(train_features, train_labels)
    best_c = search.best_params_['linearsvc__C']
  predictions = search.predict(test_features)
  return {
      'linear_top1': float(100.0 * np.mean(predictions == test_labels)),
      'linear_C': float(best_c),
      'num_classes': int(len(np.unique(np.concatenate([train_labels, test_labels])))),
  }
