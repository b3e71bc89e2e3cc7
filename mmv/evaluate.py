"""The evaluation binary: a training run's checkpoints on the downstream benchmarks.

    python -m mmv.evaluate --benchmark NAME --data_dir DIR --workdir WORKDIR \
        [--step N | --watch] [--output FILE] [--split S] [--cache_dir PATH]

NAME: ucf101, hmdb51, esc50, msrvtt, youcook2, kinetics or synthetic (the README says how to
lay out DIR for each). The model is the one in WORKDIR/config.json (written by training), or
`--config FILE` (with `--config.eval.*` overrides). Without --step the latest checkpoint is
evaluated; --watch evaluates every checkpoint that appears, once, in order, until the run's final
one (`train.steps`).

Each benchmark is measured by its protocol block `config.eval.NAME`, the published protocol by
default (mmv/benchmarks/protocols.py holds the fields and their sources); the model computes in
`eval.dtype` (float32 by default, whatever it trained in). Videos are converted at the block's
frame rate. What `mmv.benchmarks` says a benchmark measures:
- linear: frozen pooled backbone features of `train_passes` augmented passes over the training
  videos (random offset and crop, and the block's flip / scale jitter), and of `test_clips`
  evenly spaced, centrally cropped clips per test video; StandardScaler + linear SVM with the
  block's C (or C chosen by cross-validation among several), decision scores averaged over
  clips. `linear_top1` / `linear_top5` in percent.
- retrieval: each test video's `retrieval_clips` clip embeddings in S_vat averaged (normalised,
  averaged, normalised), against its first caption. `t2v_*`: captions query videos; `v2t_*`:
  videos query captions. R@k in percent, MedR / MeanR the median / mean rank (1 = first).
- zero_shot: each class name as a caption (`zero_shot_template`), the nearest per test video.
  `zero_shot_top1` / `zero_shot_top5` in percent.
Metrics are means over the block's splits (each split's are in the record). The record's
`protocol` lists every setting used and whether it is the published protocol; the report shows
the paper's numbers only when it is.

Outputs: WORKDIR/eval/NAME/step_N.{json,md} (the record and a short report beside the paper's
numbers), TensorBoard scalars `eval/NAME/*` at the checkpoint's step in WORKDIR/tensorboard/eval,
`--output` (a JSON list of the records, in step order), and the features of each checkpoint in
WORKDIR/eval/NAME/features/step_N, so that a second run (e.g. `--linear_c=1e-3`) fits the
probe without running the model again.
"""

import copy
import functools
import json
import os
import time

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
import numpy as np
import tensorboardX
import tensorflow as tf
import tqdm

from mmv import benchmarks
from mmv.benchmarks import protocols
from mmv import checkpoint as ckpt_lib
from mmv import inference
from mmv.data import pipeline
from mmv.data import records
from mmv.evaluators import features as features_lib
from mmv.evaluators import jax_linear
from mmv.evaluators import linear_probe
from mmv.evaluators import report
from mmv.evaluators import retrieval
from mmv.evaluators import zero_shot


_BENCHMARK = flags.DEFINE_enum('benchmark', None, sorted(benchmarks.BENCHMARKS),
                               'Benchmark to evaluate on.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'The benchmark in its official layout.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Training workdir holding checkpoints/.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step; the latest when left out.')
_WATCH = flags.DEFINE_bool('watch', False, 'Evaluate each new checkpoint until the final one.')
_OUTPUT = flags.DEFINE_string('output', None, 'JSON file for the list of records.')
_SPLIT = flags.DEFINE_string('split', None,
                             'One official split (e.g. 2); default: eval.NAME.splits.')
_CACHE_DIR = flags.DEFINE_string('cache_dir', None,
                                 'Where converted shards go (default DATA_DIR/.mmv_cache).')
_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file; default: the training run\'s WORKDIR/config.json.',
    lock_config=True)
_LINEAR_C = flags.DEFINE_list('linear_c', None, 'C values for the linear probe (overrides '
                              'config.eval.NAME.c; several are chosen by cross-validation).')
_CACHE_FEATURES = flags.DEFINE_bool('cache_features', True,
                                    'Keep features per checkpoint under WORKDIR/eval.')
_POLL_SECONDS = flags.DEFINE_float('poll_seconds', 30.0, '--watch: seconds between looks.')
_WATCH_TIMEOUT = flags.DEFINE_float(
    'watch_timeout', 0.0, '--watch: stop after this many seconds without a new checkpoint '
    '(0: wait for the final checkpoint however long).')
_PROGRESS = flags.DEFINE_bool('progress', True,
                              'A progress line per split on stderr (on a terminal).')
flags.mark_flags_as_required(['benchmark', 'data_dir', 'workdir'])


def protocol(config, bench):
  """The protocol block `config.eval.NAME` of `bench`."""
  if bench.name not in config.eval:
    raise ValueError(f'the config has no protocol block eval.{bench.name} (a config written '
                     'before evaluation protocols were per benchmark?); pass --config with a '
                     'config file of this version')
  return config.eval[bench.name]


def check_eval_config(config, bench):
  """Clear errors for `config.eval` settings of `bench` that cannot work."""
  ev, block = config.eval, protocol(config, bench)
  expected = protocols.fields(bench.protocols, bench.modality)
  if set(block) != set(expected):
    raise ValueError(f'eval.{bench.name} must have the fields {sorted(expected)}; it has '
                     f'{sorted(block)}')
  if ev.dtype not in inference.DTYPES:
    raise ValueError(f'eval.dtype must be one of {inference.DTYPES}, got {ev.dtype!r}')
  if ev.batch_size < 1:
    raise ValueError(f'eval.batch_size must be at least 1, got {ev.batch_size}')
  unknown = [s for s in block.splits if s not in bench.splits]
  if not block.splits or unknown:
    raise ValueError(f'eval.{bench.name}.splits must be among {bench.splits}, got '
                     f'{block.splits}')
  for name in ('frame_stride', 'num_frames', 'crop_size', 'train_passes', 'test_clips',
               'retrieval_clips', 'cv_folds'):
    if name in block and block[name] < 1:
      raise ValueError(f'eval.{bench.name}.{name} must be at least 1, got {block[name]}')
  if block.fps <= 0 or block.get('min_resize', 0) < 0:
    raise ValueError(f'eval.{bench.name}: fps must be positive and min_resize at least 0')
  if 'linear' in bench.protocols:
    if block.classifier not in protocols.CLASSIFIERS:
      raise ValueError(f'eval.{bench.name}.classifier must be one of '
                       f'{tuple(protocols.CLASSIFIERS)}, got {block.classifier!r}')
    if not block.c or min(block.c) <= 0:
      raise ValueError(f'eval.{bench.name}.c must be positive C values, got {block.c}')
    jitter = block.get('train_scale_jitter', protocols.NO_AUGMENTATION)
    if len(jitter) != 2 or not 0 < jitter[0] <= jitter[1]:
      raise ValueError(f'eval.{bench.name}.train_scale_jitter must be (min, max) with '
                       f'0 < min <= max, got {jitter}')


def checkpoint_identity(workdir, step):
  """What tells checkpoint `step` of `workdir` from another written there (an import over a
  removed run): its directory and modification time."""
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), read_only=True)
  try:
    path = checkpointer.step_directory(step)
  finally:
    checkpointer.close()
  return {'path': path, 'mtime_ns': os.stat(path).st_mtime_ns}


# Protocol fields that do not change the features: another C is fitted on cached features.
_PROBE_FIELDS = ('splits', 'classifier', 'c', 'cv_folds', 'zero_shot_template')


def feature_key(config, bench, workdir, step):
  """Everything besides the data that the features of `bench` depend on (a cache entry is
  valid for these): the model as evaluated, the checkpoint, the protocol and the dtype."""
  block = {k: v for k, v in protocol(config, bench).items() if k not in _PROBE_FIELDS}
  return json.loads(json.dumps({
      'model': inference.model_config(config).model.to_dict(), 'dtype': config.eval.dtype,
      'checkpoint': checkpoint_identity(workdir, step), 'protocol': block}))


def _replace(data_config, **changes):
  c = copy.deepcopy(data_config)
  for k, v in changes.items():
    c[k] = v
  return c


def benchmark_data_config(config, bench, prepared):
  """The data config reading `prepared` by the protocol `config.eval.NAME`: its clips, resize,
  crop and training augmentation, nothing of the training run's augmentation; the training
  run's input format (normalisation, audio features) and vocabulary."""
  block = protocol(config, bench)
  vocab = pipeline.vocab_path(config.data)
  if not os.path.exists(vocab):
    raise FileNotFoundError(f'the training vocabulary {vocab!r} (data.data_dir/data.vocab of '
                            'the run) is needed to encode text; run from the directory '
                            'training ran in, or pass --config with its absolute path')
  if float(prepared.fps) != float(block.fps):
    raise ValueError(f'{bench.name} split {prepared.split} is stored at {prepared.fps} fps '
                     f'({prepared.data_dir}), but eval.{bench.name}.fps is {block.fps}: '
                     f'prepare it at {block.fps} fps (the evaluation binary does for raw '
                     f'layouts) or set eval.{bench.name}.fps')
  video = bench.modality == 'video'
  augment = video and 'linear' in bench.protocols
  c = _replace(config.data, data_dir=prepared.data_dir, vocab=os.path.abspath(vocab),
               mixture=(), train_split='train', test_split='test', with_names=False,
               label_format='index', num_classes=0,
               modalities=('video',) if video else ('audio',),
               fps=float(block.fps), frame_stride=block.frame_stride,
               num_frames=block.num_frames, num_test_clips=1, color_augment=False,
               random_flip=bool(augment and block.train_flip),
               scale_jitter=(tuple(block.train_scale_jitter) if augment
                             else protocols.NO_AUGMENTATION))
  if video:
    c.min_resize, c.crop_size = block.min_resize, block.crop_size
  return c


def protocol_settings(config, bench, splits):
  """Every setting `bench` is measured with on `splits`, and whether that is the published
  protocol, for the record."""
  block = protocol(config, bench).to_dict()
  block['splits'] = list(splits)
  video = bench.modality == 'video'
  differs = protocols.differences(bench.name, block, config.eval.dtype)
  out = {'protocols': list(bench.protocols), 'source': protocols.SOURCES[bench.name],
         'published': differs == [], 'modality': bench.modality, 'dtype': config.eval.dtype,
         'fps': block['fps'], 'frame_stride': block['frame_stride'],
         'frames': block['num_frames'],
         'clip_seconds': block['num_frames'] * block['frame_stride'] / block['fps']}
  if differs:
    out['differs_from_published'] = differs
  if bench.name in protocols.NOT_IN_PAPER:
    out['not_in_paper'] = list(protocols.NOT_IN_PAPER[bench.name])
  if video:
    out.update(resize_short_side=block['min_resize'] or 'kept', crop=block['crop_size'])
  if 'linear' in bench.protocols:
    train_clip = ['random offset']
    if video:
      train_clip.append(f'random crop {block["crop_size"]}')
      if tuple(block['train_scale_jitter']) != protocols.NO_AUGMENTATION:
        train_clip.append(f'scale jitter {list(block["train_scale_jitter"])}')
      if block['train_flip']:
        train_clip.append('left-right flip')
    c = block['c']
    out['linear'] = {
        'features': 'pooled output of ' + (config.model.video_backbone if video
                                            else config.model.audio_backbone),
        'train_passes': block['train_passes'], 'train_clip': ', '.join(train_clip),
        'test_clips': block['test_clips'],
        'test_clip': 'evenly spaced' + (f', central crop {block["crop_size"]}' if video else ''),
        'classifier': protocols.CLASSIFIERS[block['classifier']],
        **({'C': c[0]} if len(c) == 1 else {'c_grid': list(c), 'cv_folds': block['cv_folds']}),
        'scores': 'decision scores averaged over the test clips'}
  if 'retrieval' in bench.protocols:
    out['retrieval'] = {
        'clips': block['retrieval_clips'], 'crop': f'central {block["crop_size"]}',
        'space': 'S_vat', 'caption': "each video's first", 'clip_average':
        'normalise, average, normalise'}
  if 'zero_shot' in bench.protocols:
    out['zero_shot'] = {'template': block['zero_shot_template'], 'clips': block['test_clips'],
                        'space': 'S_vat'}
  return out


def _probe(block, train, test, seed):
  c_grid = tuple(block.c)
  if block.classifier == 'svm':
    return linear_probe.linear_probe(*train, *test, c_grid=c_grid, folds=block.cv_folds,
                                     seed=seed)
  return jax_linear.linear_probe(*train, *test, c_grid=c_grid, folds=block.cv_folds, seed=seed,
                                 solver=block.classifier.removeprefix('jax_'))


def _prefixed(prefix, result):
  return {f'{prefix}{k}': v for k, v in result.items()}


def caption_tokens(data_config, captions):
  """Token ids [N, max_words] of zero-shot `captions`; a caption left without a word once the
  stop words are dropped would embed as padding alone, so it is an error naming it."""
  tokens, empty = inference.text_tokens(data_config, captions)
  if empty:
    raise ValueError(f'{len(empty)} zero-shot class captions have no word left once the stop '
                     f'words are dropped: {empty[:5]}; change the protocol\'s '
                     'zero_shot_template or data.stop_words')
  return tokens


class SplitEvaluation:
  """The protocols of one benchmark split on one checkpoint, features through the cache."""

  def __init__(self, config, bench, prepared, step, checkpoint, cache_dir, progress, key):
    """`progress`: a tqdm bar over the split's feature sets (`feature_roles`), or None."""
    self.config, self.bench, self.prepared, self.step = config, bench, prepared, step
    self.block = protocol(config, bench)
    self.data = benchmark_data_config(config, bench, prepared)
    self.key = key  # `feature_key`: the cache entries' settings besides the data.
    self.checkpoint = checkpoint
    self.cache_dir = cache_dir
    self.progress = progress
    self.counts = {}  # role → {'listed', 'read', 'skipped'}.
    self.unreadable = {}  # 'train' | 'test' → the unreadable shard tails, where videos were lost.
    self._linear_test = None

  def _embed_fn(self, with_text):
    _, variables, mesh = self.checkpoint.restored
    return self.checkpoint.embed_fn(self.bench.modality, with_text), variables, mesh

  def features(self, role, split, *, with_text=False, augment_seed=None, **data_changes):
    data = _replace(self.data, **data_changes)
    if with_text:
      data.modalities = tuple(data.modalities) + ('text',)
    directory = self.cache_dir and os.path.join(self.cache_dir, self.prepared.split, role)
    arrays, skipped, cached = features_lib.cached_extract(
        directory, data, split, functools.partial(self._embed_fn, with_text), step=self.step,
        key=self.key, modality=self.bench.modality, with_text=with_text,
        augment_seed=augment_seed,
        batch_size=self.config.eval.batch_size,
        progress=None)  # The split's one bar (`progress`) counts the roles instead.
    if self.progress is not None:
      self.progress.set_postfix_str(role)
      self.progress.update()
    # Listed: what the benchmark's split lists (converted or not); read: what reaches the
    # metrics. The difference is every video lost, whether at conversion, as a record that
    # fails to decode, or in an unreadable shard tail whose records cannot be counted.
    listed = {s.split: s for s in (self.prepared.train, self.prepared.test) if s}[split].num_listed
    read = int(len(arrays['label']))
    if read > listed:
      raise ValueError(f'{self.bench.name} split {self.prepared.split}: {read} videos read from '
                       f'{data.data_dir}/{split}-* but the split lists {listed}: these are not '
                       'the shards it was prepared into')
    self.counts[role] = {'listed': listed, 'read': read, 'skipped': listed - read}
    if read < listed and split not in self.unreadable:
      self.unreadable[split] = list(records.read_contents(
          records.split_files(data.data_dir, split)).tails)
    self._say(role, f'features from the cache ({read} of {listed} videos)' if cached else
              f'features computed ({read} of {listed} videos; {skipped} records failed)')
    if not len(arrays['label']):
      raise ValueError(f'{self.bench.name} split {self.prepared.split}: no video of '
                       f'{data.data_dir}/{split}-* could be read ({skipped} skipped)')
    return arrays

  def linear(self):
    passes = [self.features(f'train_pass{p}', self.prepared.train.split, augment_seed=p)
              for p in range(self.block.train_passes)]
    labels = np.asarray(passes[0]['label'])
    if any(not np.array_equal(p['label'], labels) for p in passes[1:]):
      raise ValueError('the augmented passes over the training videos read different videos '
                       '(a record fails for some clips only); set data.strict to find it')
    train = np.stack([np.asarray(p['features'])[:, 0] for p in passes], axis=1)
    test = self.linear_test()
    for role, y in (('training', labels), ('test', test['label'])):
      if (np.asarray(y) < 0).any():
        raise ValueError(f'{self.bench.name} split {self.prepared.split}: '
                         f'{int((np.asarray(y) < 0).sum())} {role} videos have no label')
    return _prefixed('linear_', _probe(self.block, (train, labels),
                                       (test['features'], test['label']), self.config.seed))

  def linear_test(self):
    if self._linear_test is None:  # Shared by the linear probe and zero-shot classification.
      self._linear_test = self.features('linear_test', self.prepared.test.split,
                                        num_test_clips=self.block.test_clips)
    return self._linear_test

  def _say(self, role, what):
    print(f'{self.bench.name} split {self.prepared.split} step {self.step} {role}: {what}',
          flush=True)

  def retrieval(self):
    test = self.features('retrieval_test', self.prepared.test.split, with_text=True,
                         num_test_clips=self.block.retrieval_clips)
    queries = np.flatnonzero(test['has_text'])
    if not len(queries):
      raise ValueError(f'{self.bench.name} split {self.prepared.split}: no test video has a '
                       'caption to retrieve it with')
    result = retrieval.retrieval_metrics(np.asarray(test['text'])[queries], test['video'],
                                         text_to_video=queries)
    return {k if k[:4] in ('t2v_', 'v2t_') else f'retrieval_{k}': v for k, v in result.items()}

  def zero_shot(self):
    test = self.linear_test()
    captions = zero_shot.class_captions(self.prepared.class_names,
                                        self.block.zero_shot_template)
    result = zero_shot.zero_shot_classification(test['video'], self.encode_captions(captions),
                                                test['label'])
    return _prefixed('zero_shot_', result)

  def encode_captions(self, captions):
    """S_vat embeddings [len(captions), vat] of `captions`, through the cache."""
    d = self.data
    wanted = json.loads(json.dumps({'step': self.step, 'captions': captions, 'vocab': d.vocab,
                                    'stop_words': d.stop_words, 'max_words': d.max_words,
                                    'model': self.key['model'],
                                    'checkpoint': self.key['checkpoint']}))
    directory = self.cache_dir and os.path.join(self.cache_dir, 'class_captions')
    hit = directory and features_lib.load(directory, wanted)
    if hit:
      self._say('class_captions', f'features from the cache ({len(captions)} captions)')
      return np.asarray(hit[0]['text'])
    tokens = caption_tokens(d, captions)
    text = np.asarray(self.checkpoint.encode_text(self.checkpoint.restored[1], tokens))
    if directory:
      features_lib.save(directory, wanted, {'text': text})
    self._say('class_captions', f'features computed ({len(captions)} captions)')
    return text

  def run(self):
    result = {}
    for protocol in self.bench.protocols:
      result.update(getattr(self, protocol)())
    return result


def feature_roles(bench, block):
  """The feature sets `SplitEvaluation` extracts for `bench`'s protocols with `block`."""
  roles = []
  if 'linear' in bench.protocols:
    roles += [f'train_pass{p}' for p in range(block.train_passes)]
  if {'linear', 'zero_shot'} & set(bench.protocols):
    roles.append('linear_test')
  if 'retrieval' in bench.protocols:
    roles.append('retrieval_test')
  return roles


def evaluate_step(config, bench, prepared_splits, workdir, step, *, cache_features=True,
                  progress=True):
  """The record (see `report.make_record`) of checkpoint `step` on every prepared split, by
  the protocol `config.eval.NAME` (its `splits` are what `prepared_splits` should hold)."""
  check_eval_config(config, bench)
  # Checkpoint → embeddings: one implementation, shared with the embedding API.
  checkpoint = inference.Checkpoint(config, workdir, step)
  cache_dir = (os.path.join(workdir, 'eval', bench.name, 'features', f'step_{step}')
               if cache_features else None)
  key = feature_key(config, bench, workdir, step)
  per_split, counts, unreadable = {}, {'listed': {}, 'read': {}, 'skipped': {}}, {}
  for split, prepared in prepared_splits.items():
    # One line per split, on a terminal only (disable=None), not a bar per feature set.
    with tqdm.tqdm(total=len(feature_roles(bench, protocol(config, bench))),
                   desc=f'{bench.name} split {prepared.split} step {step}', unit='set',
                   disable=None if progress else True, leave=False) as bar:
      evaluation = SplitEvaluation(config, bench, prepared, step, checkpoint, cache_dir,
                                   bar if progress else None, key)
      per_split[split] = evaluation.run()
    for what, per_role in counts.items():
      per_role[split] = {k: v[what] for k, v in evaluation.counts.items()}
    if any(evaluation.unreadable.values()):
      unreadable[split] = {k: v for k, v in evaluation.unreadable.items() if v}
  settings = protocol_settings(config, bench, list(prepared_splits))
  settings.update({f'videos_{what}': v for what, v in counts.items()})
  if unreadable:
    settings['unreadable_shards'] = unreadable
  settings['prepared'] = {s: p.summary() for s, p in prepared_splits.items()}
  return report.make_record(bench.name, step, config.model.video_backbone, settings, per_split)


def prepare_splits(bench, config, data_dir, *, split=None, cache_dir=None, **options):
  """{split: Prepared} of `split` (default: the protocol's splits), videos converted at the
  protocol's frame rate; `options`: the other fields of `benchmarks.Options`."""
  block = protocol(config, bench)
  splits = (str(split),) if split is not None else tuple(block.splits)
  prepared = {}
  for s in splits:
    prepared.update(bench.prepare(data_dir, cache_dir=cache_dir, split=s, fps=block.fps,
                                  **options))
  return prepared


def record_name(step, split=None):
  return f'step_{step}' if split is None else f'step_{step}_split_{split}'


def publish(record, out_dir, writer, name):
  """Writes the record and its report under `out_dir`, the scalars to TensorBoard, and prints
  the report."""
  report.write(record, out_dir, name)
  for tag, value in report.scalars(record):
    writer.add_scalar(f'eval/{tag}', value, record['step'])
  writer.flush()
  print(report.render_markdown(record), flush=True)


def checkpoint_steps(workdir):
  """Steps of the complete checkpoints in `workdir` (none while it has no checkpoints/)."""
  return ckpt_lib.existing_steps(os.path.join(workdir, 'checkpoints'))


def watch(evaluate, final_step, workdir, done, *, poll_seconds, timeout=0.0,
          sleep=time.sleep, clock=time.monotonic):
  """Calls `evaluate(step)` for each checkpoint not in `done`, once, in step order, as they
  appear, until the checkpoint of `final_step` is evaluated (or `timeout` seconds pass without
  a new one, when positive). Returns the steps evaluated, in order."""
  done, evaluated, last_new = set(done), [], clock()
  while final_step not in done:
    new = [s for s in checkpoint_steps(workdir) if s > max(done, default=-1)]
    for step in new:
      try:
        evaluate(step)
        evaluated.append(step)
      except FileNotFoundError:
        if step in checkpoint_steps(workdir):
          raise
        # Removed by the run's max_to_keep before its turn came.
        print(f'checkpoint {step} was removed before it could be evaluated; going on',
              flush=True)
      done.add(step)
    if new:
      last_new = clock()
    elif final_step not in done:
      if timeout and clock() - last_new > timeout:
        print(f'no new checkpoint for {timeout:.0f} s; stopping before the final step '
              f'{final_step}', flush=True)
        break
      sleep(poll_seconds)
  return evaluated


def _load_records(paths):
  records = []
  for path in paths:
    with open(path) as f:
      records.append(json.load(f))
  return records


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if _WATCH.value and _STEP.value is not None:
    raise app.UsageError('--step and --watch exclude each other')
  tf.config.set_visible_devices([], 'GPU')
  logging.set_verbosity(logging.WARNING)
  # Orbax says so each time the binary opens the training run's checkpoints (read-only, as
  # intended).
  logging.get_absl_logger().addFilter(
      lambda record: not record.getMessage().startswith('Given directory is read only'))
  workdir = _WORKDIR.value
  bench = benchmarks.get(_BENCHMARK.value)
  config = _CONFIG.value
  while config is None:
    try:
      config = inference.read_run_config(workdir)
    except FileNotFoundError:
      if not _WATCH.value:
        raise
      time.sleep(_POLL_SECONDS.value)
  if _LINEAR_C.value:
    config = copy.deepcopy(config)
    protocol(config, bench).c = tuple(float(c) for c in _LINEAR_C.value)
  check_eval_config(config, bench)
  # Conversion (at the protocol's frame rate) runs now, while the training run may still be
  # writing its first checkpoint.
  prepared = prepare_splits(bench, config, _DATA_DIR.value, split=_SPLIT.value,
                            cache_dir=_CACHE_DIR.value, progress=_PROGRESS.value)
  for p in prepared.values():
    print(f'{bench.name} split {p.split}: {json.dumps(p.summary())}', flush=True)

  out_dir = os.path.join(workdir, 'eval', bench.name)
  writer = tensorboardX.SummaryWriter(os.path.join(workdir, 'tensorboard', 'eval'))
  paths = {}

  def evaluate(step):
    record = evaluate_step(config, bench, prepared, workdir, step,
                           cache_features=_CACHE_FEATURES.value, progress=_PROGRESS.value)
    publish(record, out_dir, writer, record_name(step, _SPLIT.value))
    paths[step] = os.path.join(out_dir, record_name(step, _SPLIT.value) + '.json')
    if _OUTPUT.value:  # After every checkpoint, so a watching job's file is always current.
      os.makedirs(os.path.dirname(os.path.abspath(_OUTPUT.value)), exist_ok=True)
      with open(_OUTPUT.value, 'w') as f:
        json.dump(_load_records(paths[s] for s in sorted(paths)), f, indent=1)

  try:
    if _WATCH.value:
      done = [s for s in checkpoint_steps(workdir) if os.path.exists(
          os.path.join(out_dir, record_name(s, _SPLIT.value) + '.json'))]
      for s in done:
        paths[s] = os.path.join(out_dir, record_name(s, _SPLIT.value) + '.json')
      if done:
        print(f'already evaluated: steps {done} (delete {out_dir} to evaluate them again)')
      watch(evaluate, config.train.steps, workdir, done, poll_seconds=_POLL_SECONDS.value,
            timeout=_WATCH_TIMEOUT.value)
    else:
      evaluate(inference.latest_step(workdir) if _STEP.value is None else _STEP.value)
  except ckpt_lib.DamagedCheckpointError as e:
    raise SystemExit(f'error: {e}; pass --step to evaluate another') from None
  finally:
    writer.close()
  if _OUTPUT.value:
    print(f'wrote {_OUTPUT.value}')


if __name__ == '__main__':
  app.run(main)
