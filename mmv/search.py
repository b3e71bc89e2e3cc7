r"""Searches an index made by `python -m mmv.embed` for moments, by a sentence, a sound or a clip.

    python -m mmv.search --index runs/demo/index "a red circle moves left" [--top_k 10] [--json]
    python -m mmv.search --index runs/demo/index --video clip.mp4 --dedupe 0.95  # look-alikes
    python -m mmv.search --index runs/demo/index --audio bark.wav     # sound-alike moments
    python -m mmv.search --index runs/demo/index --audio bark.wav --audio_against video
    python -m mmv.search --index runs/demo/index "a red circle" --files   # ranked files
    python -m mmv.search --index runs/demo/index --precision_at 5     # class-caption queries

Results are moments: one file's neighbouring windows merged into one hit, with its start and
end (seconds from the file's start), where its best window starts (`peak`) and that window's
score (a cosine similarity); `--files` ranks whole files by their embedding instead. A
sentence is matched against the picture in S_vat (as the retrieval benchmarks), a clip
(`--video`) too (look-alikes), a sound (`--audio`) against the indexed sound in S_va
(sound-alikes; `--audio_against video`: the picture in S_va). `--dedupe T` drops a result whose
cosine similarity to a better one (or, for a file query, to the query: its own copies) is at
least T. What is matched how: `mmv.moments`. Windows are searched exactly up to a few hundred
thousand (`mmv.ann.EXACT_LIMIT`); where `mmv.embed --ann` built an approximate index (faiss) it
is used (`--exact` to search exactly anyway). The query is embedded by the model the index was
made with, as its windows were (`--workdir` if the run has moved since).

--precision_at K: every label of the indexed files (the labels of the input CSV) is a query,
`--template` filled with the label (its underscores read as spaces by the tokenizer); its
precision@K is the share of its K best files that carry that label. Prints their mean over the
labels (and each label's with --json).
"""

import json
import sys

from absl import app
from absl import flags
import numpy as np

from mmv import checkpoint as ckpt_lib
from mmv import index_ann
from mmv import moments


def precision_at(index, k, template='{}'):
  """{label: precision@k} of each label's caption (`template` filled with it) as a text query
  over the index's files, in percent."""
  entries = index.files
  labels = sorted({l for e in entries for l in e['labels']})
  if not labels:
    raise ValueError('the index has no labels: index a CSV with a label column')
  queries = index.model.embed_text([template.format(l) for l in labels]).vat
  out = {}
  for label, query in zip(labels, queries):
    order, _ = moments.exact_scorer(index.file_vectors['vat'], query, k)
    out[label] = 100.0 * float(np.mean([label in entries[i]['labels'] for i in order]))
  return out


def _format(found):
  return '\n'.join(f'{r["rank"]:3d}  {r["score"]:+.4f}  {r["file"] or r["name"]}  '
                   f'[{r["start"]:.1f}-{r["end"]:.1f} s]' for r in found)


def define_flags():
  """The command line (defined only when run, so importing this module defines no flags)."""
  flags.DEFINE_string('index', None, 'The index directory made by python -m mmv.embed.')
  flags.DEFINE_string('video', None, 'A video file as the query: look-alike moments (S_vat).')
  flags.DEFINE_string('audio', None, 'A sound file as the query: sound-alike moments (S_va).')
  flags.DEFINE_enum('audio_against', 'sound', moments.AGAINST, '--audio: the indexed sound '
                    '(sound-alikes) or the picture (audio → video), in S_va.')
  flags.DEFINE_bool('files', False, 'Rank whole files instead of moments.')
  flags.DEFINE_float('dedupe', None, 'Drop results with a cosine similarity at least this to a '
                     'better one (or to a query file).')
  flags.DEFINE_float('merge', 0.05, 'A neighbouring window joins a moment when it scores at '
                     'most this below the moment\'s best window.')
  flags.DEFINE_integer('top_k', 10, 'Results shown.')
  flags.DEFINE_bool('exact', False, 'Exact search even where `mmv.embed --ann` built an '
                    'approximate index (over its float16 copy of the windows, read a block at '
                    'a time).')
  flags.DEFINE_bool('json', False, 'Print the results as JSON: a list of {file, start, end, '
                    'score, ...}.')
  flags.DEFINE_string('workdir', None, 'The model\'s workdir if it moved since the index was '
                      'made (default: the one the index records).')
  flags.DEFINE_integer('precision_at', None, 'Mean precision@K of every label\'s caption '
                       '(--template) as a query.')
  flags.DEFINE_string('template', '{}', '--precision_at: the caption made of a label.')
  flags.mark_flags_as_required(['index'])


def main(argv):
  f = flags.FLAGS
  if len(argv) > 2:
    raise app.UsageError(f'give one sentence (quoted), got {argv[1:]}')
  ckpt_lib.start_reader()
  text = argv[1] if len(argv) == 2 else None
  try:
    if f.top_k < 1:
      raise ValueError(f'--top_k must be at least 1, got {f.top_k}')
    index = moments.open_index(f.index, workdir=f.workdir)
    if not index.files:
      raise ValueError(f'{f.index} holds no embedded file yet')
    if f.precision_at is not None:
      if f.precision_at < 1 or any(x is not None for x in (text, f.video, f.audio)):
        raise ValueError('--precision_at K (K >= 1) takes no query')
      per_label = precision_at(index, f.precision_at, f.template)
      mean = float(np.mean(list(per_label.values())))
      if f.json:
        print(json.dumps({f'precision@{f.precision_at}': mean, 'labels': per_label,
                          'files': len(index.files)}, indent=1))
      else:
        print(f'precision@{f.precision_at} of {len(per_label)} label queries over '
              f'{len(index.files)} files: {mean:.1f}%')
      return
    anns, notes = index_ann.load(index) if not f.exact else ({}, [])
    for note in notes:
      print(f'note: {note}', file=sys.stderr)
    found = moments.search(index, text=text, audio_file=f.audio, video_file=f.video,
                           files=f.files, top_k=f.top_k, dedupe=f.dedupe, merge=f.merge,
                           audio_against=f.audio_against,
                           scorer=index_ann.scorer(index, anns))
  except (FileNotFoundError, ValueError) as e:
    raise SystemExit(f'error: {e}') from None
  print(json.dumps(found, indent=1) if f.json else _format(found))


if __name__ == '__main__':
  define_flags()
  app.run(main)
