"""The evaluation protocols: linear probes (scikit-learn and JAX), retrieval, zero-shot, report."""

import json

import numpy as np
import pytest

from mmv.evaluators import accuracy
from mmv.evaluators import jax_linear
from mmv.evaluators import linear_probe
from mmv.evaluators import report
from mmv.evaluators import retrieval
from mmv.evaluators import zero_shot


def _clustered(seed, *, classes, dim, train_videos, test_videos, train_clips, test_clips,
               separation, noise=1.0):
  """(train x, train y, test x, test y): Gaussian class clusters, per-video and per-clip noise.

  Features get a per-dimension scale and offset shared by both splits, so standardisation
  matters. x is [videos, clips, dim] float32, videos ordered by class.
  """
  rng = np.random.default_rng(seed)
  centres = separation * rng.normal(size=(classes, dim))
  scale, offset = rng.uniform(0.5, 3.0, size=dim), rng.normal(size=dim)

  def split(videos_per_class, clips):
    labels = np.repeat(np.arange(classes), videos_per_class)
    videos = centres[labels] + noise * rng.normal(size=(len(labels), dim))
    clips = videos[:, None] + noise * rng.normal(size=(len(labels), clips, dim))
    return (clips * scale + offset).astype(np.float32), labels

  return split(train_videos, train_clips) + split(test_videos, test_clips)


def test_topk_accuracy_counts_ties_and_unknown_labels_as_wrong():
  scores = np.array([[3., 1., 2.], [1., 1., 1.], [0., 5., 4.], [1., 2., 3.]])
  # Row 0: class 0 first. Row 1: a three-way tie, rank 3. Row 2: class 2 second. Row 3: unseen.
  columns = accuracy.label_columns(np.array([10, 11, 12, 99]), np.array([10, 11, 12]))
  np.testing.assert_array_equal(columns, [0, 1, 2, -1])
  assert accuracy.topk_accuracy(scores, columns, ks=(1, 2, 3)) == {
      'top1': 25.0, 'top2': 50.0, 'top3': 75.0}


def test_linear_probe_reaches_100_on_separable_features():
  data = _clustered(0, classes=5, dim=16, train_videos=8, test_videos=6, train_clips=3,
                    test_clips=4, separation=10.0, noise=0.5)
  result = linear_probe.linear_probe(*data, c_grid=(1e-3, 1e-1, 10.0), folds=3, n_jobs=1)
  assert result['top1'] == 100.0 and result['top5'] == 100.0
  assert result['C'] in (1e-3, 1e-1, 10.0) and result['cv_folds'] == 3
  assert len(result['cv_top1']) == 3 and max(result['cv_top1']) == 100.0
  assert (result['num_train_videos'], result['num_train_clips']) == (40, 120)
  assert (result['num_test_videos'], result['num_test_clips']) == (30, 120)
  assert result['num_classes'] == 5 and result['solver'] == 'liblinear'


def test_linear_probe_is_at_chance_on_shuffled_labels():
  classes = 10
  train_x, train_y, test_x, test_y = _clustered(
      1, classes=classes, dim=16, train_videos=40, test_videos=300, train_clips=2,
      test_clips=1, separation=10.0, noise=0.5)
  rng = np.random.default_rng(1)
  # Labels shuffled over videos: balanced, independent of the (perfectly clustered) features.
  result = linear_probe.linear_probe(train_x, rng.permutation(train_y), test_x,
                                     rng.permutation(test_y), c=1e-2)
  # 3000 test videos: the standard deviation of top-1 around 10% is 0.55 points.
  assert abs(result['top1'] - 100.0 / classes) < 3.0
  assert abs(result['top5'] - 500.0 / classes) < 5.0
  assert result['cv_top1'] is None and result['C'] == 1e-2


def test_linear_probe_averages_decision_scores_over_clips():
  rng = np.random.default_rng(2)
  train_y = np.repeat([0, 1], 50)
  train_x = (2.0 * train_y - 1.0 + 0.1 * rng.normal(size=100))[:, None, None]
  # Two clips lean weakly to class 0 and one strongly to class 1: a vote over clips says 0, the
  # mean decision score says 1.
  test_x = np.array([[[-0.2], [-0.2], [3.0]]], np.float32)
  result = linear_probe.linear_probe(train_x.astype(np.float32), train_y, test_x, [1], c=1.0)
  assert result['top1'] == 100.0 and result['num_test_clips'] == 3


def test_video_folds_keep_the_clips_of_a_video_together():
  labels = np.repeat(np.arange(4), 6)
  folds = linear_probe.video_folds(labels, 3, seed=0)
  assert len(folds) == 3
  seen = []
  for train_videos, val_videos in folds:
    train_rows = linear_probe.clip_rows(train_videos, 5)
    val_rows = linear_probe.clip_rows(val_videos, 5)
    assert not set(train_rows // 5) & set(val_rows // 5)  # No video on both sides.
    assert len(set(train_rows) | set(val_rows)) == len(labels) * 5
    np.testing.assert_array_equal(np.bincount(labels[val_videos]), [2, 2, 2, 2])  # Stratified.
    seen.extend(val_videos)
  assert sorted(seen) == list(range(len(labels)))
  # The rarest class has 2 videos: 2 folds at most.
  assert len(linear_probe.video_folds(np.array([0, 0, 1, 1, 1, 1]), 5)) == 2


@pytest.mark.slow
def test_jax_lbfgs_matches_sklearn_within_one_point():
  data = _clustered(3, classes=20, dim=64, train_videos=30, test_videos=30, train_clips=5,
                    test_clips=4, separation=0.4)
  grid = (1e-4, 1e-2, 1.0)
  svm = linear_probe.linear_probe(*data, c_grid=grid, folds=3, n_jobs=1)
  jax_result = jax_linear.linear_probe(*data, c_grid=grid, folds=3)
  assert 20.0 < svm['top1'] < 90.0  # Well between chance (5%) and 100%.
  assert abs(jax_result['top1'] - svm['top1']) <= 1.0
  assert abs(jax_result['top5'] - svm['top5']) <= 1.0
  np.testing.assert_allclose(jax_result['cv_top1'], svm['cv_top1'], atol=1.0)
  assert jax_result['C'] == svm['C'] and jax_result['solver'] == 'jax_lbfgs'
  assert set(jax_result) == set(svm)


def test_jax_adam_streams_from_a_memmap_close_to_sklearn(tmp_path):
  train_x, train_y, test_x, test_y = _clustered(
      3, classes=20, dim=64, train_videos=30, test_videos=30, train_clips=5, test_clips=4,
      separation=0.4)
  stored = np.lib.format.open_memmap(str(tmp_path / 'train.npy'), mode='w+',
                                     dtype=np.float32, shape=train_x.shape)
  stored[:] = train_x
  svm = linear_probe.linear_probe(train_x, train_y, test_x, test_y, c=1e-2)
  adam = jax_linear.linear_probe(stored, train_y, test_x, test_y, c=1e-2, solver='adam',
                                 batch_videos=64, chunk_videos=256)
  assert abs(adam['top1'] - svm['top1']) <= 2.0  # A stochastic solver: a looser bound.
  assert adam['solver'] == 'jax_adam' and adam['num_train_clips'] == 3000


def test_feature_stats_match_numpy_and_leave_constant_features_alone():
  x = np.random.default_rng(4).normal(3.0, 2.0, size=(50, 3, 4)).astype(np.float32)
  x[..., 3] = 0.1  # Not exact in binary: E[x²] - E[x]² is a rounding error, not a variance.
  mean, inv_std = jax_linear.feature_stats(x, chunk_videos=7)
  flat = x.reshape(-1, 4)
  np.testing.assert_allclose(mean, flat.mean(0), rtol=1e-5)
  np.testing.assert_allclose(inv_std[:3], 1.0 / flat[:, :3].std(0), rtol=1e-4)
  assert inv_std[3] == 1.0


def test_retrieval_identity_is_perfect():
  m = retrieval.metrics_from_similarity(np.eye(12))
  for d in ('t2v', 'v2t'):
    assert m[f'{d}_R@1'] == m[f'{d}_R@5'] == m[f'{d}_R@10'] == 100.0
    assert m[f'{d}_MedR'] == 1.0 and m[f'{d}_MeanR'] == 1.0
  assert (m['num_queries'], m['num_videos'], m['num_video_queries']) == (12, 12, 12)


def test_retrieval_reversed_ranks_are_known():
  n = 20
  i, j = np.meshgrid(np.arange(n), np.arange(n), indexing='ij')
  # Each pair scores lowest in its row and its column: rank n both ways.
  worst = retrieval.metrics_from_similarity(((j - i) % n).astype(float))
  assert worst['t2v_R@10'] == worst['v2t_R@10'] == 0.0
  assert worst['t2v_MedR'] == worst['v2t_MedR'] == worst['t2v_MeanR'] == float(n)
  # Every text prefers later videos, the scores of its other videos distinct: text i ranks its
  # video n - i. Columns are constant, so v2t is one big tie: rank n for every video.
  graded = retrieval.metrics_from_similarity(j.astype(float))
  np.testing.assert_array_equal(retrieval.text_to_video_ranks(j), n - np.arange(n))
  assert graded['t2v_R@1'] == 5.0 and graded['t2v_R@5'] == 25.0 and graded['t2v_R@10'] == 50.0
  assert graded['t2v_MedR'] == 10.5 and graded['t2v_MeanR'] == 10.5
  assert graded['v2t_R@10'] == 0.0 and graded['v2t_MedR'] == float(n)


def test_retrieval_ties_count_against_the_query():
  s = np.array([[0.5, 0.5, 0.1],
                [0.5, 0.9, 0.9],
                [0.3, 0.3, 0.3]])
  np.testing.assert_array_equal(retrieval.text_to_video_ranks(s), [2, 2, 3])
  np.testing.assert_array_equal(retrieval.video_to_text_ranks(s), [2, 1, 2])


def test_retrieval_with_several_captions_per_video_and_one_without():
  # Texts 0, 1 describe video 0; text 2 video 1; video 2 has no caption.
  s = np.array([[0.1, 0.9, 0.0],
                [0.8, 0.2, 0.0],
                [0.3, 0.4, 0.5]])
  text_to_video = np.array([0, 0, 1])
  np.testing.assert_array_equal(retrieval.text_to_video_ranks(s, text_to_video), [2, 1, 2])
  # Video 0: its best caption (text 1, 0.8) beats text 2 (0.3): rank 1; its other caption does
  # not count against it. Video 1: its caption (0.4) is behind text 0 (0.9): rank 2.
  np.testing.assert_array_equal(retrieval.video_to_text_ranks(s, text_to_video), [1, 2])
  m = retrieval.metrics_from_similarity(s, text_to_video)
  assert m['v2t_R@1'] == 50.0 and m['num_video_queries'] == 2 and m['num_videos'] == 3
  with pytest.raises(ValueError):
    retrieval.metrics_from_similarity(s[:2])


def test_retrieval_averages_normalised_clip_embeddings():
  video = np.array([[[1., 0.], [0., 5.]],  # Clips normalised first: the mean points at 45°.
                    [[1., 0.], [1., 0.]]])
  np.testing.assert_allclose(retrieval.average_clips(video), [[0.5**0.5] * 2, [1., 0.]],
                             rtol=1e-6)
  text = np.array([[0.6, 1.], [3., 0.]])
  m = retrieval.retrieval_metrics(text, video)
  assert m['t2v_R@1'] == 100.0 and m['v2t_R@1'] == 100.0


def test_class_names_become_captions():
  cases = {'ApplyEyeMakeup': 'apply eye makeup', 'brush_hair': 'brush hair',
           'YoYo': 'yo yo', 'PlayingTVShow': 'playing tv show', 'ride_bike ': 'ride bike',
           'playing guitar': 'playing guitar', 'Jump-Rope': 'jump rope'}
  for name, caption in cases.items():
    assert zero_shot.caption_from_class_name(name) == caption
  assert zero_shot.class_captions(['BlowDryHair'], 'a video of {}') == [
      'a video of blow dry hair']


def test_zero_shot_takes_the_nearest_caption():
  captions = np.eye(6)  # Class c's caption points along axis c.
  video = np.array([[[0.9, 0.1, 0, 0, 0, 0], [1.0, 0, 0, 0, 0, 0]],  # Class 0, first.
                    [[0.2, 0.9, 0, 0, 0, 0], [0.2, 0.9, 0, 0, 0, 0]],  # Class 1, first.
                    [[0.1, 0, 0.2, 0.9, 0, 0], [0.1, 0, 0.2, 0.9, 0, 0]],  # Label 2: second.
                    [[0.5, 0.4, 0.3, 0.2, 0.1, 0], [0.5, 0.4, 0.3, 0.2, 0.1, 0]]])  # 5: sixth.
  m = zero_shot.zero_shot_classification(video, captions, np.array([0, 1, 2, 5]))
  assert m == {'top1': 50.0, 'top5': 75.0, 'num_videos': 4, 'num_classes': 6}
  encoded = []

  def encode_text(strings):
    encoded.extend(strings)
    return captions[:2]

  m = zero_shot.classify(video[:2], [0, 1], ['JumpingJack', 'pull_ups'], encode_text)
  assert encoded == ['jumping jack', 'pull ups'] and m['top1'] == 100.0
  assert m['captions'] == encoded


def _linear_record(backbone, benchmark, published=True):
  per_split = {f'split{i}': {'linear_top1': 80.0 + i, 'linear_top5': 95.0, 'linear_C': 1e-3,
                             'cv_top1': [1.0], 'linear_num_test_videos': np.int64(100)}
               for i in (1, 2, 3)}
  protocol = {'protocols': ['linear'], 'published': published, 'train_clips': 10,
              'test_clips': 10, 'test_crop': 'central',
              'videos_listed': {'1': {'train_pass0': 9537}},
              'videos_read': {'1': {'train_pass0': 9537}},
              'videos_skipped': {'1': {'train_pass0': 0}}}
  return report.make_record(benchmark, 1000, backbone, protocol, per_split)


def test_record_averages_splits_and_is_json():
  record = _linear_record('s3d_g', 'UCF-101')
  assert record['benchmark'] == 'ucf101' and record['step'] == 1000
  # C and counts are not averaged.
  assert record['metrics'] == {'linear_top1': 82.0, 'linear_top5': 95.0}
  assert record['protocol']['splits'] == ['split1', 'split2', 'split3']
  assert record['splits']['split2']['linear_C'] == 1e-3
  assert json.loads(json.dumps(record)) == record
  assert dict(report.scalars(record))['ucf101/split3/linear_top1'] == 83.0


def test_report_puts_paper_numbers_beside_ours(tmp_path):
  md = report.render_markdown(_linear_record('s3d_g', 'ucf101'))
  assert '| linear_top1 | 82.00 | 89.6 |' in md and '| linear_top5 | 95.00 | — |' in md
  assert 'checkpoint step 1000' in md and '"train_clips"' not in md and 'train_clips: 10' in md
  assert '| linear_top1 | 81.00 | 82.00 | 83.00 | 82.00 |' in md
  retrieval_md = report.render_markdown(report.make_record(
      'msrvtt', 5, 'tsm_resnet50x2', {'clips': 4, 'published': True},
      {'test': retrieval.metrics_from_similarity(np.eye(3))}))
  assert '| t2v_R@10 | 100.00 | 31.1 |' in retrieval_md
  assert '| t2v_MedR | 1.00 | 38 |' in retrieval_md
  assert '| v2t_R@1 | 100.00 | — |' in retrieval_md
  other = report.render_markdown(_linear_record('tiny_video', 'ucf101'))
  assert '89.6' not in other and 'reports no number' in other
  # Another protocol: the paper's numbers are not comparable, so they are not shown.
  record = _linear_record('s3d_g', 'ucf101', published=False)
  record['protocol']['differs_from_published'] = ['c', 'dtype']
  differs = report.render_markdown(record)
  assert '89.6' not in differs and '| linear_top1 | 82.00 | — |' in differs
  assert 'Not the published protocol (differs in: c, dtype)' in differs
  json_path, md_path = report.write(_linear_record('s3d_g', 'hmdb51'), str(tmp_path))
  assert json.load(open(json_path))['benchmark'] == 'hmdb51'
  assert '62.6' in open(md_path).read()


def test_linear_probe_in_the_dual_as_released_or_the_primal_finds_the_same_classifier():
  data = _clustered(5, classes=4, dim=8, train_videos=10, test_videos=10, train_clips=2,
                    test_clips=2, separation=0.6)
  dual = linear_probe.linear_probe(*data, c=1e-3, dual=True, max_iter=1000)
  primal = linear_probe.linear_probe(*data, c=1e-3, dual=False, max_iter=1000)
  assert 30.0 < dual['top1'] < 100.0  # Neither chance nor separable.
  assert (dual['top1'], dual['top5']) == (primal['top1'], primal['top5'])
