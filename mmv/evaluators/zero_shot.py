"""Zero-shot classification in S_vat: class names become captions, each video takes the nearest.

The caller encodes the captions with the model's text tower (it owns the tokenizer and the
checkpoint); this module makes the captions and scores videos against their embeddings.
"""

import re

import numpy as np

from mmv.evaluators import accuracy
from mmv.evaluators import retrieval

# A word boundary inside CamelCase: 'EyeMakeup' → 'Eye Makeup', 'TVShow' → 'TV Show'.
_CAMEL_BOUNDARY = re.compile(r'(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])')


def caption_from_class_name(name):
  """'ApplyEyeMakeup' → 'apply eye makeup', 'brush_hair' → 'brush hair' (lower case, spaced)."""
  words = []
  for part in re.split(r'[\s_\-]+', name.strip()):
    words.extend(_CAMEL_BOUNDARY.sub(' ', part).split())
  return ' '.join(w.lower() for w in words)


def class_captions(class_names, template='{}'):
  """One caption per class, `template` formatted with the class name in words."""
  return [template.format(caption_from_class_name(name)) for name in class_names]


def zero_shot_classification(video, caption_embeddings, labels):
  """Top-1/top-5 (percent) of each video's nearest class captions by cosine similarity.

  Args:
    video: [num_videos, D] or per clip [num_videos, num_clips, D] S_vat embeddings (clips are
      averaged as in retrieval: normalise, average, normalise).
    caption_embeddings: [num_classes, D] S_vat embeddings; row c is class c's caption.
    labels: [num_videos] class indices (rows of `caption_embeddings`).

  Returns:
    {'top1', 'top5', 'num_videos', 'num_classes'}.
  """
  caption_embeddings = np.asarray(caption_embeddings)
  labels = np.asarray(labels)
  num_classes = caption_embeddings.shape[0]
  scores = retrieval.similarity(caption_embeddings, video).T  # [videos, classes]
  columns = np.where((labels >= 0) & (labels < num_classes), labels, -1)
  return {**accuracy.topk_accuracy(scores, columns, ks=(1, 5)),
          'num_videos': int(scores.shape[0]), 'num_classes': int(num_classes)}


def classify(video, labels, class_names, encode_text, template='{}'):
  """`zero_shot_classification` with the captions of `class_names` encoded by `encode_text`.

  `encode_text(list_of_strings) -> [len(list), D]` is the model's text tower into S_vat.
  Returns the metrics plus 'captions' (the strings used), so the record shows what was asked.
  """
  captions = class_captions(class_names, template)
  metrics = zero_shot_classification(video, np.asarray(encode_text(captions)), labels)
  return {**metrics, 'captions': captions}
