"""The converter on Apache Beam: `python -m mmv.ingest.convert ... --runner=DataflowRunner`.

It reads the same inputs as the local path (mmv/ingest/clip_lists.py), decodes every clip with
the same options (`clip_records.read_options`) on whichever worker the runner picks, and writes
the same files: the shards byte for byte (a clip goes to the shard `clip_records.shard_of`
picks, in input order within it, whatever order the workers finish in), labels.txt, vocab.txt
and NAME.report.json. The label map and the vocabulary are combined in the pipeline from every
clip, with the local path's rules (mmv/ingest/text_files.py: an existing labels.txt or
vocab.txt is reused).

Clips are decoded by video (a video at a URL is copied to the worker's disk once for all of its
clips: PyAV reads local files), then grouped by shard; one worker writes a whole shard, under a
temporary name, into the staging directory OUTPUT_DIR/.NAME.beam-DIGEST/ (hidden, so that no
reader's NAME-*-of-* takes anything in it), renames it there when complete and then writes its
part of the report next to it, which marks it done; a retried worker writes it again. Once the
pipeline has succeeded, the launcher stages the report and moves the new files into OUTPUT_DIR
(mmv/ingest/staging.py): until then OUTPUT_DIR shows nothing new but the staging directory.
DIGEST names the inputs (path, size, modification time) and every setting, so that a failed
job run again with the same command decodes only the clips of the shards it had not finished
(shards are written once every clip is decoded: this saves the work of a job that failed while
writing them). A move cut short is finished by the next run into OUTPUT_DIR of that split;
when that run is the same command, it is all the run does.

Files go through tf.io.gfile: OUTPUT_DIR, the inputs and VIDEO_ROOT may be gs:// paths.
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile

import apache_beam as beam
from apache_beam.options import pipeline_options
import tensorflow as tf

from mmv.ingest import clip_lists
from mmv.ingest import clip_records
from mmv.data import format as fmt
from mmv.ingest import media
from mmv.data import shard_names
from mmv.ingest import staging
from mmv.ingest import text_files

_REJECTED = 'rejected'


def _csv_clips(path, video_root):
  """((row index,), ClipSpec) of a CSV's clips; its rows that are not clips tagged REJECTED."""
  specs, rejected = clip_lists.read_csv(path, video_root)
  for i, item in enumerate(rejected):
    yield beam.pvalue.TaggedOutput(_REJECTED, ((i,), item))
  for i, spec in enumerate(specs):
    yield (i,), spec


def _narrated_videos(path):
  """(video_id, entry) of a narration JSON, read by one worker and spread by the next step."""
  yield from clip_lists.read_narration_json(path).items()


def _narration_clips(video, video_root, min_clip_seconds, num_captions):
  """((video_id, k), ClipSpec) of one narrated video's clips, in `read_narration`'s order."""
  video_id, entry = video
  specs = clip_lists.narration_clips(
      video_id, entry, clip_lists.find_video(video_root, video_id),
      min_clip_seconds=min_clip_seconds, num_captions=num_captions)
  for k, spec in enumerate(specs):
    yield (video_id, k), spec


@contextlib.contextmanager
def _local(path):
  """`path`, or for a URL (gs://...) a copy on the local disk, which PyAV can open (None, read
  as 'no such file', when there is nothing at the URL)."""
  if path is None or '://' not in path:
    yield path
    return
  with tempfile.TemporaryDirectory() as directory:
    local = os.path.join(directory, os.path.basename(path))
    try:
      tf.io.gfile.copy(path, local)
    except tf.errors.NotFoundError:
      local = None
    yield local


def _decode_video(group, labels, *, options, num_shards, audio_format):
  """(shard, (order, kind, payload)) of the clips of one video: kind 'example' (the record's
  bytes), 'skipped', 'short', 'packets_skipped' or 'audio_clipped' (the report's entries)."""
  path, items = group
  label_ids = {label: i for i, label in enumerate(labels)}
  with _local(path) as local:
    for order, spec in items:
      shard = clip_records.shard_of(spec, num_shards)
      clip = media.read_clip_or_reason(dataclasses.replace(spec, path=local), **options)
      if isinstance(clip, str):  # The reason names the URL, not the worker's copy.
        reason = clip.replace(local, path) if local and local != path else clip
        yield shard, (order, 'skipped', (spec.name, reason))
        continue
      example = clip_records.make_example(spec, clip, label_ids, fps=options['fps'],
                                          sample_rate=options['sample_rate'],
                                          audio_format=audio_format)
      yield shard, (order, 'example', example.SerializeToString(deterministic=True))
      if clip.short:
        yield shard, (order, 'short', (spec.name, clip.short))
      if clip.packets_skipped:
        yield shard, (order, 'packets_skipped', (spec.name, clip.packets_skipped))
      if clipped := clip_records.clipped_samples(clip, audio_format):
        yield shard, (order, 'audio_clipped', (spec.name, clipped))


def _lines(lines):
  return ''.join(f'{line}\n' for line in lines)


def _part(path):
  """The report of the staged shard `path`, written after it: the mark that it is complete."""
  return path + '.json'


def _write_shard(group, *, staging_dir, name, num_shards):
  """Writes one shard's records, in input order, into `staging_dir`, then its part of the
  report."""
  shard, values = group
  items = sorted((v for v in values if v is not None), key=lambda v: (v[0], v[1]))
  path = os.path.join(staging_dir, fmt.shard_name(name, shard, num_shards))
  part = {'written': 0, 'skipped': [], 'short': [], 'packets_skipped': [], 'audio_clipped': []}
  tmp = staging.temporary(path)
  with tf.io.TFRecordWriter(tmp) as writer:
    for order, kind, payload in items:
      if kind == 'example':
        writer.write(payload)
        part['written'] += 1
      else:
        part[kind].append([order, *payload])
  tf.io.gfile.rename(tmp, path, overwrite=True)
  staging.write_text(_part(path), json.dumps(part))
  return shard


def _write_vocab(captioned, words, path):
  if captioned:  # As the local path: a vocab.txt when some clip has captions.
    staging.write_text(path, _lines(word for word, _ in words))


def _write_labels(labels, path):
  if labels:
    staging.write_text(path, _lines(labels))


def _build(p, job):
  """The pipeline: `job` holds the launcher's settings (see `run`)."""
  if job['input_csv']:
    read = (p | 'Csv' >> beam.Create([job['input_csv']])
            | 'ReadCsv' >> beam.FlatMap(_csv_clips, job['video_root']).with_outputs(
                _REJECTED, main='specs'))
    specs, rejected = read.specs, read[_REJECTED]
    # The reading worker made every spec: spread them over the workers.
    specs = specs | 'SpreadClips' >> beam.Reshuffle()
  else:
    specs = (p | 'Narration' >> beam.Create([job['narration_json']])
             | 'ReadNarration' >> beam.FlatMap(_narrated_videos)
             | 'SpreadVideos' >> beam.Reshuffle()
             | 'NarrationClips' >> beam.FlatMap(
                 _narration_clips, job['video_root'], job['min_clip_seconds'],
                 job['num_captions']))
    rejected = p | 'NoRejectedRows' >> beam.Create([])
  staging_dir = job['staging']

  labels = (specs | 'Labels' >> beam.FlatMap(lambda item: item[1].labels)
            | 'DistinctLabels' >> beam.Distinct()
            | 'LabelSet' >> beam.combiners.ToList()
            | 'LabelMap' >> beam.Map(text_files.resolve_labels, job['existing_labels'],
                                     job['label_map_path']))
  if job['existing_labels'] is None:
    _ = labels | 'WriteLabels' >> beam.Map(_write_labels,
                                           os.path.join(staging_dir, fmt.LABEL_MAP))
  if job['write_vocab']:
    # Each caption once, as the local path counts: a narration's is stored by several clips.
    words = (specs | 'Captions' >> beam.FlatMap(lambda item: text_files.caption_keys(*item))
             | 'DistinctCaptions' >> beam.Distinct()
             | 'Words' >> beam.FlatMap(lambda caption: text_files.words(caption[1]))
             | 'CountWords' >> beam.combiners.Count.PerElement()
             | 'Vocabulary' >> beam.combiners.Top.Of(
                 text_files.MAX_WORDS, key=lambda wc: text_files.vocabulary_order(*wc),
                 reverse=True))
    _ = (specs | 'Captioned' >> beam.Map(lambda item: bool(item[1].captions))
         | 'AnyCaptioned' >> beam.CombineGlobally(any)
         | 'WriteVocab' >> beam.Map(_write_vocab, beam.pvalue.AsSingleton(words),
                                    os.path.join(staging_dir, 'vocab.txt')))
  _ = (rejected | 'RejectedRows' >> beam.combiners.ToList()
       | 'WriteRejected' >> beam.Map(
           lambda items: staging.write_text(os.path.join(staging_dir, 'rejected.json'),
                                            json.dumps(sorted(items)))))

  num_shards, done = job['num_shards'], job['done']
  records = (specs | 'NotDone' >> beam.Filter(
      lambda item: clip_records.shard_of(item[1], num_shards) not in done)
             | 'ByVideo' >> beam.GroupBy(lambda item: item[1].path)
             | 'Decode' >> beam.FlatMap(
                 _decode_video, beam.pvalue.AsSingleton(labels), options=job['read_options'],
                 num_shards=num_shards, audio_format=job.get('audio_format', 'float')))
  # Every shard that is not done is written, an empty one included (as the local path does).
  todo = p | 'Shards' >> beam.Create([(i, None) for i in range(num_shards) if i not in done])
  _ = ((records, todo) | 'Flatten' >> beam.Flatten()
       | 'ByShard' >> beam.GroupByKey()
       | 'WriteShards' >> beam.Map(_write_shard, staging_dir=staging_dir, name=job['name'],
                                   num_shards=num_shards))


def _digest(settings, input_path):
  """Names what a job makes: the input file as it is now and `settings`."""
  stat = tf.io.gfile.stat(input_path)
  key = {**settings, 'input': [input_path, stat.length, stat.mtime_nsec]}
  return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _finish(job, output_dir, *, overwrite, created):
  """Stages the report, then moves the staged shards and new text files into `output_dir`
  (`staging.finish_move`, which a rerun finishes if it is cut short); the report dict, as
  `convert.convert` returns it."""
  staging_dir, name, num_shards = job['staging'], job['name'], job['num_shards']
  staged = [os.path.join(staging_dir, fmt.shard_name(name, i, num_shards))
            for i in range(num_shards)]
  parts = [json.loads(staging.read_text(_part(path))) for path in staged]
  rejected_path = os.path.join(staging_dir, 'rejected.json')
  rejected = (json.loads(staging.read_text(rejected_path))
              if tf.io.gfile.exists(rejected_path) else [])
  by_order = lambda key: [tuple(item[1:]) for item in
                          sorted((i for part in parts for i in part[key]), key=lambda i: i[0])]
  report = {'written': sum(part['written'] for part in parts),
            'shards': [os.path.join(output_dir, os.path.basename(path)) for path in staged],
            'skipped': [tuple(item) for _, item in rejected] + by_order('skipped'),
            'short': by_order('short'), 'packets_skipped': by_order('packets_skipped'),
            'audio_clipped': by_order('audio_clipped')}
  texts = []
  if job['existing_labels'] is None:
    texts.append((os.path.join(staging_dir, fmt.LABEL_MAP), job['label_map_path']))
  if job['write_vocab']:
    texts.append((os.path.join(staging_dir, 'vocab.txt'), os.path.join(output_dir, 'vocab.txt')))
  texts = [(src, dst) for src, dst in texts if tf.io.gfile.exists(src)]
  label_file = os.path.join(staging_dir, fmt.LABEL_MAP)
  report['labels'] = (job['existing_labels'] if job['existing_labels'] is not None else
                      staging.read_text(label_file).splitlines()
                      if tf.io.gfile.exists(label_file) else [])
  if not report['written']:
    tf.io.gfile.rmtree(staging_dir)
    if created and not tf.io.gfile.listdir(output_dir):
      tf.io.gfile.rmtree(output_dir)  # Nothing written leaves no trace, not the directory.
    raise clip_records.nothing_written(report['skipped'])
  existing = staging.refuse_existing(output_dir, name, overwrite)
  report_path = os.path.join(output_dir, clip_records.report_name(name))
  staged_report = staging.staged_path(staging_dir, report_path)
  staging.write_text(staged_report, clip_records.report_text(report))
  moves = list(zip(staged, report['shards'])) + texts + [(staged_report, report_path)]
  staging.begin_move(staging_dir, moves=moves, remove=existing, report=report,
                     command=job['command'])
  return staging.finish_move(staging_dir)['report']


def run(output_dir, *, name, num_shards, input_csv=None, narration_json=None, video_root='',
        min_clip_seconds=4.0, num_captions=8, label_map_path=None, overwrite=False,
        beam_args=(), audio_format='float', **decoding):
  """Converts the clips of `input_csv` or `narration_json` with Beam (`beam_args`: Beam's
  command line, --runner included) into `output_dir`, as `convert.convert` does locally;
  returns its report dict. `decoding`: the keyword arguments of `clip_records.read_options`
  (fps, short_side, ...). Waits for the pipeline to finish.

  A move of `name` into `output_dir` that was cut short is finished first; if it was this
  command's (the same inputs and settings), that is all, and its report is returned."""
  if (input_csv is None) == (narration_json is None):
    raise ValueError('give one of input_csv and narration_json')
  options = pipeline_options.PipelineOptions(list(beam_args))
  # Beam drops the arguments it does not know with a warning: a typo would go unnoticed.
  unknown = sorted(set(options.get_all_options(retain_unknown_options=True)) -
                   set(options.get_all_options()))
  if unknown:
    raise clip_records.ConversionError(f'neither the converter nor Beam knows --{unknown[0]}')
  label_map_path = label_map_path or os.path.join(output_dir, fmt.LABEL_MAP)
  settings = dict(
      input_csv=input_csv, narration_json=narration_json, video_root=video_root,
      min_clip_seconds=min_clip_seconds, num_captions=num_captions, name=name,
      num_shards=num_shards, read_options=clip_records.read_options(**decoding),
      label_map_path=label_map_path)
  clip_records.check_audio_format(audio_format)
  if audio_format != 'float':  # The default leaves the digest of earlier conversions as it was.
    settings['audio_format'] = audio_format
  command = _digest(settings, input_csv or narration_json)
  for manifest in staging.finish_cut_short(output_dir, name):
    if manifest.get('command') == command:
      return manifest['report']
  # After the moves: they may have brought labels.txt and vocab.txt.
  job = dict(settings, existing_labels=(text_files.read_lines(label_map_path)
                                        if tf.io.gfile.exists(label_map_path) else None),
             write_vocab=not tf.io.gfile.exists(os.path.join(output_dir, 'vocab.txt')))
  # The staged files depend on the label map and vocabulary found too.
  digest = _digest(job, input_csv or narration_json)
  job.update(command=command, staging=staging.directory(output_dir, name, f'beam-{digest}'))
  staging.refuse_existing(output_dir, name, overwrite)  # Before any work.
  created = not tf.io.gfile.isdir(output_dir)
  tf.io.gfile.makedirs(job['staging'])
  complete = set(tf.io.gfile.listdir(job['staging']))
  job['done'] = frozenset(i for i in range(num_shards)
                          if _part(fmt.shard_name(name, i, num_shards)) in complete)
  try:
    with beam.Pipeline(options=options) as p:
      _build(p, job)
  except BaseException:
    _discard_unless_resumable(job, output_dir, created)
    raise
  return _finish(job, output_dir, overwrite=overwrite, created=created)


def _discard_unless_resumable(job, output_dir, created):
  """After a failed job: its staging directory goes unless it holds a complete shard, and the
  output directory too if the job made it and nothing else is there."""
  staging_dir = job['staging']
  if any(name.endswith('.json') and
         shard_names.shard_sets([name[:-len('.json')]], job['name'])
         for name in tf.io.gfile.listdir(staging_dir)):
    return
  tf.io.gfile.rmtree(staging_dir)
  if created and not tf.io.gfile.listdir(output_dir):
    tf.io.gfile.rmtree(output_dir)
