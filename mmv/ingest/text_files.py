"""The text files a conversion writes beside its shards: the label map and the vocabulary.

`labels.txt` names class i on line i: the sorted label names of the first conversion into a
directory, which later splits reuse so that ids agree. `vocab.txt` lists the caption words,
most frequent first. Both paths of the converter (local and Beam) make them with these rules.
"""

import collections
import json
import os
import re

from mmv.ingest import clip_lists
from mmv.ingest import clip_records
from mmv.data import format as fmt

MAX_WORDS = 65536  # Of a vocab.txt the converter writes.


def resolve_labels(names, existing, where):
  """Label names in id order: `existing` (the lines of the map file `where`; None when there
  is none) refusing names it lacks, else the sorted `names` (for the caller to write once the
  shards are complete)."""
  if existing is None:
    return sorted(names)
  unknown = sorted(set(names) - set(existing))
  if unknown:
    raise clip_records.ConversionError(
        f'labels {unknown} are not in the label map {where}; convert every split with one map '
        '(delete it to build a new one)')
  return list(existing)


def read_lines(path):
  """The non-empty lines of a labels.txt."""
  with clip_lists.open_text(path) as f:
    return [line.rstrip('\n') for line in f if line.strip()]


def label_map(specs, path):
  """Label names in id order: those of `path` if it exists, else the sorted names."""
  existing = read_lines(path) if os.path.exists(path) else None
  return resolve_labels({label for spec in specs for label in spec.labels}, existing, path)


def caption_keys(order, spec):
  """(key, caption) for each caption of `spec`, the clip at `order` in its input, the key
  naming the caption once: a caption with its times (a narration's) by its video and times,
  as the neighbouring clips that store it too name it; any other by the clip and its place."""
  if spec.caption_starts:
    return [(json.dumps([spec.name, start, end]), caption) for caption, start, end in
            zip(spec.captions, spec.caption_starts, spec.caption_ends)]
  return [(json.dumps([order, i]), caption) for i, caption in enumerate(spec.captions)]


def words(caption):
  """The words of a caption, split as the tokenizer splits."""
  return re.sub(fmt.NON_WORD, ' ', caption.lower()).split()


def vocabulary_order(word, count):
  """The vocabulary's order: most frequent first, ties alphabetical."""
  return (-count, word)


def vocabulary(specs, max_words=MAX_WORDS):
  """Caption words, most frequent first (ties alphabetical), each caption counted once: a
  narration's caption is stored by up to `--narration_captions` clips around it."""
  captions = {key for order, spec in enumerate(specs) for key in caption_keys(order, spec)}
  counts = collections.Counter(word for _, caption in captions for word in words(caption))
  return sorted(counts, key=lambda w: vocabulary_order(w, counts[w]))[:max_words]
