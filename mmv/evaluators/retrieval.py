"""Zero-shot text–video retrieval metrics in S_vat (the MMV paper).

Video embeddings may come per clip, [num_videos, num_clips, D] (the paper uses 4 clips): each
clip embedding is L2-normalised, the clips are averaged, and the mean is L2-normalised again.
The first normalisation weighs every clip equally; the second makes the score a cosine, so that
a video whose clips disagree (a shorter mean) is not pushed down every text's ranking for that.

Captions map to videos through `text_to_video` [num_texts] (default: text i ↔ video i, as in
MSRVTT 1k-A and YouCook2 segments). A video may have several captions, or none:
- t2v: every caption is a query; its rank is that of its video among all videos.
- v2t: every video with at least one caption is a query; its rank is that of its best-placed
  caption among all captions, i.e. 1 + the number of other videos' captions scoring at least as
  high as its best caption (its own other captions are not counted against it).
Ranks are 1-based and pessimistic on ties: an item scoring exactly as high as the positive ranks
before it, so a constant similarity matrix gives the worst rank, not the best.
"""

import numpy as np

KS = (1, 5, 10)


def l2_normalize(x, axis=-1, eps=1e-12):
  x = np.asarray(x, np.float32)
  return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), eps)


def average_clips(video):
  """[num_videos, D] unit embeddings from [num_videos, num_clips, D] (or [num_videos, D])."""
  video = np.asarray(video)
  if video.ndim == 3:
    video = l2_normalize(video).mean(axis=1)
  return l2_normalize(video)


def similarity(text, video):
  """Cosine similarity [num_texts, num_videos]; `video` is [V, D] or per clip [V, clips, D]."""
  return l2_normalize(text) @ average_clips(video).T


def _paired_videos(similarity_matrix, text_to_video):
  num_texts, num_videos = similarity_matrix.shape
  if text_to_video is None:
    if num_texts != num_videos:
      raise ValueError(f'{num_texts} texts but {num_videos} videos: give text_to_video')
    return np.arange(num_texts)
  text_to_video = np.asarray(text_to_video)
  if text_to_video.shape != (num_texts,) or np.any(text_to_video < 0) or np.any(
      text_to_video >= num_videos):
    raise ValueError(f'text_to_video must be [{num_texts}] indices of {num_videos} videos')
  return text_to_video


def text_to_video_ranks(similarity_matrix, text_to_video=None):
  """1-based rank [num_texts] of each caption's video among all videos (ties pessimistic)."""
  s = np.asarray(similarity_matrix)
  paired = _paired_videos(s, text_to_video)
  positive = s[np.arange(s.shape[0]), paired][:, None]
  return np.sum(s >= positive, axis=1)  # Counts the positive itself: rank 1 is best.


def video_to_text_ranks(similarity_matrix, text_to_video=None):
  """1-based rank of each captioned video's best caption among all captions (ties pessimistic).

  Videos without captions are left out: the result has one rank per captioned video, in order.
  """
  s = np.asarray(similarity_matrix)
  paired = _paired_videos(s, text_to_video)
  own = paired[:, None] == np.arange(s.shape[1])[None, :]  # [texts, videos]
  best = np.max(np.where(own, s, -np.inf), axis=0)
  others_above = np.sum(~own & (s >= best[None, :]), axis=0)
  return (1 + others_above)[own.any(axis=0)]


def rank_metrics(prefix, ranks, ks=KS):
  """`{prefix}_R@k` (percent), `{prefix}_MedR` and `{prefix}_MeanR` of 1-based `ranks`."""
  ranks = np.asarray(ranks)
  metrics = {f'{prefix}_R@{k}': float(100.0 * np.mean(ranks <= k)) for k in ks}
  metrics[f'{prefix}_MedR'] = float(np.median(ranks))
  metrics[f'{prefix}_MeanR'] = float(np.mean(ranks))
  return metrics


def metrics_from_similarity(similarity_matrix, text_to_video=None):
  """t2v_* and v2t_* metrics of a [num_texts, num_videos] similarity matrix.

  Returns {'t2v_R@1', 't2v_R@5', 't2v_R@10', 't2v_MedR', 't2v_MeanR', the same for 'v2t_',
  'num_queries' (captions, the t2v queries), 'num_videos' (the gallery), 'num_video_queries'
  (videos with a caption, the v2t queries)}.
  """
  t2v = text_to_video_ranks(similarity_matrix, text_to_video)
  v2t = video_to_text_ranks(similarity_matrix, text_to_video)
  return {**rank_metrics('t2v', t2v), **rank_metrics('v2t', v2t),
          'num_queries': int(len(t2v)), 'num_videos': int(np.shape(similarity_matrix)[1]),
          'num_video_queries': int(len(v2t))}


def retrieval_metrics(text, video, text_to_video=None):
  """Metrics of `metrics_from_similarity` for text [T, D] and video [V, D] or [V, clips, D]."""
  return metrics_from_similarity(similarity(text, video), text_to_video)
