"""The AudioSet MLP protocol: its metrics against scikit-learn and scipy, the MLP classifier on
a separable case, and a multi-label AudioSet tree made here through the recipe, the converter
and the benchmark (slow)."""

import copy
import csv
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as sk_metrics
import tensorflow as tf

from mmv import benchmarks
from mmv import evaluate
from mmv import evaluate_inputs
from mmv import sharding
from mmv.data import format as fmt
from mmv.evaluators import jax_mlp
from mmv.evaluators import tagging
from tests import conftest
from tests import media_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _scores_with_ties(seed, n=60, k=7):
  rng = np.random.default_rng(seed)
  targets = (rng.random((n, k)) < 0.3).astype(np.float32)
  targets[0], targets[1] = 1, 0  # Every class has a positive and a negative.
  # Scores on a coarse grid: many ties, which AP and AUC must group as scikit-learn does.
  scores = np.round(targets * rng.normal(0.5, 1.0, (n, k)) + rng.normal(0, 1.0, (n, k)), 1)
  return scores, targets


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_map_and_auc_equal_scikit_learn_and_d_prime_is_the_formula(seed):
  scores, targets = _scores_with_ties(seed)
  result = tagging.tagging_metrics(scores, targets)
  assert result['mAP'] == pytest.approx(
      100 * sk_metrics.average_precision_score(targets, scores, average='macro'), abs=1e-9)
  assert result['AUC'] == pytest.approx(
      100 * sk_metrics.roc_auc_score(targets, scores, average='macro'), abs=1e-9)
  for k in range(targets.shape[1]):
    assert result['AP'][k] == pytest.approx(
        100 * sk_metrics.average_precision_score(targets[:, k], scores[:, k]), abs=1e-9)
  mean_auc = sk_metrics.roc_auc_score(targets, scores, average='macro')
  assert result['d_prime'] == pytest.approx(np.sqrt(2) * stats.norm.ppf(mean_auc), abs=1e-9)
  assert result['num_classes_scored'] == targets.shape[1]


def test_d_prime_known_values_and_unscored_classes():
  # Φ⁻¹(0.5) = 0; Φ⁻¹(0.8413447...) = 1 (the normal CDF at one σ).
  assert tagging.d_prime(0.5) == pytest.approx(0.0)
  assert tagging.d_prime(stats.norm.cdf(1.0)) == pytest.approx(np.sqrt(2))
  scores, targets = _scores_with_ties(3)
  targets[:, 2] = 0  # No positive: no AP, no AUC.
  targets[:, 4] = 1  # No negative: no AUC.
  result = tagging.tagging_metrics(scores, targets, class_names=list('abcdefg'))
  assert result['num_classes_unscored'] == 2 and result['unscored'] == ['c', 'e']
  kept = [0, 1, 3, 5, 6]
  assert result['mAP'] == pytest.approx(100 * sk_metrics.average_precision_score(
      targets[:, kept], scores[:, kept], average='macro'))
  assert result['AP'][2] is None
  with pytest.raises(ValueError, match='must be'):
    tagging.tagging_metrics(scores[:, :3], targets)


def test_mlp_learns_a_separable_multi_label_problem_above_chance():
  """Labels that are thresholds of a random projection: no linear map separates their XOR
  class; the MLP on 8 devices learns them all well above chance (AUC 0.5, mAP the class
  prior)."""
  rng = np.random.default_rng(0)
  dim, n = 16, 512
  x = rng.normal(size=(2 * n, dim)).astype(np.float32) * 3 + 5  # Not standardised.
  z = (x - 5) @ rng.normal(size=(dim, 3))
  targets = np.stack([z[:, 0] > 0, z[:, 1] > 0, (z[:, 0] > 0) ^ (z[:, 1] > 0), z[:, 2] > 1],
                     axis=1).astype(np.float32)
  clips = x[:, None] + rng.normal(0, 0.1, (2 * n, 2, dim)).astype(np.float32)  # 2 clips each.
  mesh = sharding.make_mesh()
  assert mesh.devices.size == 8
  scores, info = jax_mlp.mlp_probe(clips[:n], targets[:n], clips[n:], hidden=(64,), epochs=30,
                                   batch_videos=60, learning_rate=3e-3, mesh=mesh)
  assert info['batch_videos'] == 64 and info['devices'] == 8  # Rounded up to the devices.
  assert info['epoch_loss'][-1] < info['epoch_loss'][0] / 2
  result = tagging.tagging_metrics(scores, targets[n:])
  prior = 100 * targets[n:].mean()
  assert result['AUC'] > 90 and result['mAP'] > prior + 30, (result, prior)
  # The XOR class too, which no linear classifier (no hidden layer) learns.
  assert tagging.roc_auc(scores[:, 2], targets[n:, 2]) > 0.7
  linear, _ = jax_mlp.mlp_probe(clips[:n], targets[:n], clips[n:], hidden=(), epochs=30,
                                batch_videos=64, learning_rate=3e-3, mesh=mesh)
  assert tagging.roc_auc(linear[:, 2], targets[n:, 2]) < 0.6
