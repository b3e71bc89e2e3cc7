"""Multi-label tagging metrics as AudioSet papers report them: mAP, AUC and d-prime.

For each class k, the scores of every test clip are ranked against the clip's target for k
(1: the clip has label k, 0: not):

- AP: average precision without interpolation, as scikit-learn's `average_precision_score`
  computes it: clips sorted by decreasing score, tied scores taken together as one threshold,
  AP = Σ_n (R_n − R_{n−1}) · P_n over those thresholds (R recall, P precision);
- AUC: the area under the ROC curve, i.e. the probability that a positive clip scores above a
  negative one, ties counting one half (the Mann-Whitney statistic; scikit-learn's
  `roc_auc_score` gives the same area by trapezoids);
- mAP and AUC are the means over classes (macro); d-prime is the separation of two unit-variance
  Gaussians that gives the mean AUC: d' = √2 · Φ⁻¹(AUC) (Φ the standard normal CDF).

A class whose test clips are all positive or all negative has no AP or AUC; it is left out of
the means and counted (`num_classes_unscored`). mAP and AUC are in percent.
"""

import numpy as np
from scipy import stats


def average_precision(scores, targets):
  """AP of one class: `scores` [N], `targets` [N] (positive where > 0); NaN without
  positives."""
  scores, positive = np.asarray(scores, np.float64), np.asarray(targets) > 0
  if not positive.any():
    return float('nan')
  order = np.argsort(-scores, kind='stable')
  ranked = scores[order]
  tp = np.cumsum(positive[order])
  # The last clip of each run of equal scores: one threshold per distinct score.
  last = np.r_[np.flatnonzero(ranked[1:] != ranked[:-1]), len(ranked) - 1]
  tp = tp[last]
  precision = tp / (last + 1.0)
  recall = tp / tp[-1]
  return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def roc_auc(scores, targets):
  """AUC of one class (ties count one half); NaN when it has no positive or no negative."""
  scores, positive = np.asarray(scores, np.float64), np.asarray(targets) > 0
  num_pos = int(positive.sum())
  num_neg = len(positive) - num_pos
  if not num_pos or not num_neg:
    return float('nan')
  ranks = stats.rankdata(scores)  # Average ranks of tied scores, from 1.
  return float((ranks[positive].sum() - num_pos * (num_pos + 1) / 2.0) / (num_pos * num_neg))


def d_prime(auc):
  """√2 · Φ⁻¹(auc), auc a fraction in (0, 1)."""
  return float(np.sqrt(2.0) * stats.norm.ppf(auc))


def tagging_metrics(scores, targets, class_names=None):
  """{'mAP', 'AUC' (percent), 'd_prime', 'AP' / 'AUC_per_class' (percent, per class; None where
  unscored), 'num_classes', 'num_classes_scored', 'num_classes_unscored', 'unscored' (the first
  names)} of `scores` and multi-hot `targets`, both [N, classes]."""
  scores, targets = np.asarray(scores), np.asarray(targets)
  if scores.shape != targets.shape or scores.ndim != 2:
    raise ValueError(f'scores {scores.shape} and targets {targets.shape} must be [N, classes]')
  aps = np.array([average_precision(scores[:, k], targets[:, k])
                  for k in range(targets.shape[1])])
  aucs = np.array([roc_auc(scores[:, k], targets[:, k]) for k in range(targets.shape[1])])
  scored = ~np.isnan(aucs)  # A positive and a negative: both AP and AUC are defined.
  if not scored.any():
    raise ValueError('no class has both a positive and a negative test clip: mAP and AUC are '
                     'undefined')
  names = class_names or [str(k) for k in range(targets.shape[1])]
  mean_auc = float(np.mean(aucs[scored]))
  return {'mAP': float(100.0 * np.mean(aps[scored])), 'AUC': 100.0 * mean_auc,
          'd_prime': d_prime(mean_auc),
          'AP': [float(100.0 * a) if s else None for a, s in zip(aps, scored)],
          'AUC_per_class': [float(100.0 * a) if s else None for a, s in zip(aucs, scored)],
          'num_classes': int(targets.shape[1]), 'num_classes_scored': int(scored.sum()),
          'num_classes_unscored': int((~scored).sum()),
          'unscored': [names[k] for k in np.flatnonzero(~scored)[:10]]}
