r"""Searches an index made by `python -m mmv.embed` with a sentence, a video or a sound.

    python -m mmv.search --index runs/demo/index "a red circle moves left" [--top_k 10] [--json]
    python -m mmv.search --index runs/demo/index --video query.mp4     # video → video, S_vat
    python -m mmv.search --index runs/demo/index --audio bark.wav      # audio → video, S_va
    python -m mmv.search --index runs/demo/index --precision_at 5      # class-caption queries

A sentence is matched in S_vat (text → video, as the retrieval benchmarks), a video in S_vat,
a sound in S_va (where the model puts audio beside video). Scores are cosine similarities.
The query is embedded by the model the index was made with: the workdir, step and config its
index.json records (`--workdir` if the run has moved since). Results: rank, score, file, and its
clip (start-end seconds) when the input listed times.

--precision_at K: every label of the indexed files (the labels of the input CSV) is a query,
`--template` filled with the label (its underscores read as spaces by the tokenizer, e.g. the
synthetic dataset's `circle_left`); its precision@K is the share of its K best files that carry
that label. Prints their mean over the labels (and each label's with --json).
"""

import json

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from mmv import embed as embed_lib
from mmv import checkpoint as ckpt_lib
from mmv import inference


def load_index(index_dir, workdir=None):
  """(Model the index was made with, settings, va, vat, entries); `workdir` overrides the one
  recorded (a moved run); the step and config are always the index's."""
  settings, va, vat, entries, _ = embed_lib.read_index(index_dir)
  if not entries:
    raise ValueError(f'{index_dir} holds no embedded file yet')
  recorded = settings['model']
  model = inference.load(workdir or recorded['workdir'], recorded['step'],
                         inference.config_from_dict(settings['config']),
                         dtype=recorded['model']['dtype'],
                         short_side=recorded['short_side'])
  return model, settings, va, vat, entries


def query_embedding(model, settings, *, text=None, video=None, audio=None):
  """(space, unit query [D]) of exactly one of a sentence, a video file, a sound file."""
  if sum(x is not None for x in (text, video, audio)) != 1:
    raise ValueError('give one query: a sentence, --video FILE or --audio FILE')
  if text is not None:
    return 'vat', model.embed_text([text]).vat[0]
  if video is not None:
    return 'vat', model.embed_videos([video], clips=settings['clips']).vat[0]
  return 'va', model.embed_audio([audio], clips=settings['clips']).va[0]


def rank(query, gallery, top_k):
  """(indices, scores) of the `top_k` rows of `gallery` [N, D] most similar to `query` [D];
  ties keep index order."""
  scores = gallery @ query
  order = np.argsort(-scores, kind='stable')[:top_k]
  return order, scores[order]


def results(entries, order, scores):
  return [{'rank': r + 1, 'score': round(float(s), 4), 'file': entries[i]['file'],
           'name': entries[i]['name'], 'start': entries[i]['start'], 'end': entries[i]['end'],
           'labels': entries[i]['labels']} for r, (i, s) in enumerate(zip(order, scores))]


def precision_at(model, vat, entries, k, template='{}'):
  """{label: precision@k} of each label's caption (`template` filled with it) as a text query
  over the index, in percent."""
  labels = sorted({l for e in entries for l in e['labels']})
  if not labels:
    raise ValueError('the index has no labels: index a CSV with a label column')
  queries = model.embed_text([template.format(l) for l in labels]).vat
  out = {}
  for label, query in zip(labels, queries):
    order, _ = rank(query, vat, k)
    out[label] = 100.0 * float(np.mean([label in entries[i]['labels'] for i in order]))
  return out


def _format(found):
  lines = []
  for r in found:
    clip = '' if r['start'] in (None, 0.0) and r['end'] is None else (
        f'  [{r["start"]}-{"end" if r["end"] is None else r["end"]} s]')
    lines.append(f'{r["rank"]:3d}  {r["score"]:+.4f}  {r["file"] or r["name"]}{clip}')
  return '\n'.join(lines)


def define_flags():
  """The command line (defined only when run, so importing this module defines no flags)."""
  flags.DEFINE_string('index', None, 'The index directory made by python -m mmv.embed.')
  flags.DEFINE_string('video', None, 'A video file as the query (video → video, S_vat).')
  flags.DEFINE_string('audio', None, 'A sound file as the query (audio → video, S_va).')
  flags.DEFINE_integer('top_k', 10, 'Results shown.')
  flags.DEFINE_bool('json', False, 'Print the results as JSON.')
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
  tf.config.set_visible_devices([], 'GPU')
  ckpt_lib.quiet_read_only_opens()
  text = argv[1] if len(argv) == 2 else None
  try:
    if f.top_k < 1:
      raise ValueError(f'--top_k must be at least 1, got {f.top_k}')
    model, settings, va, vat, entries = load_index(f.index, f.workdir)
    if f.precision_at is not None:
      if f.precision_at < 1 or any(x is not None for x in (text, f.video, f.audio)):
        raise ValueError('--precision_at K (K >= 1) takes no query')
      per_label = precision_at(model, vat, entries, f.precision_at, f.template)
      mean = float(np.mean(list(per_label.values())))
      if f.json:
        print(json.dumps({f'precision@{f.precision_at}': mean, 'labels': per_label,
                          'files': len(entries)}, indent=1))
      else:
        print(f'precision@{f.precision_at} of {len(per_label)} label queries over '
              f'{len(entries)} files: {mean:.1f}%')
      return
    space, query = query_embedding(model, settings, text=text, video=f.video, audio=f.audio)
    order, scores = rank(query, va if space == 'va' else vat, f.top_k)
  except (FileNotFoundError, ValueError) as e:
    raise SystemExit(f'error: {e}') from None
  found = results(entries, order, scores)
  print(json.dumps(found, indent=1) if f.json else _format(found))


if __name__ == '__main__':
  define_flags()
  app.run(main)
