"""The evaluation binary: a training run's checkpoints on the downstream benchmarks.

    python -m mmv.evaluate --benchmark NAME --data_dir DIR --workdir WORKDIR \
        [--step N | --watch] [--output FILE] [--split S] [--cache_dir PATH]

NAME: ucf101, hmdb51, esc50, audioset, kinetics, moments_in_time, msrvtt, youcook2 or
synthetic, or the image benchmarks
voc2007, imagenet and synthetic_images (the README says how to lay out DIR for each). The
model is the one in WORKDIR/config.json (written by training), or `--config FILE` (with
`--config.eval.*` overrides). Without --step the latest checkpoint is evaluated; --watch
evaluates every checkpoint that appears, once, in order, until the run's final one
(`train.steps`).

Each benchmark is measured by its protocol block `config.eval.NAME`, the published protocol by
default (mmv/benchmarks/protocols.py holds the fields and their sources); the model computes in
`eval.dtype` (float32 by default, whatever it trained in). Videos are converted at the block's
frame rate; clips are drawn from their first `max_seconds` when it is set (20 for UCF101 and
HMDB51, as the released script decodes them), starting where `clip_offsets` says. The model
sees at most `eval.batch_size` clips at once (whole videos' clips, split evenly over the
devices). What `mmv.benchmarks` says a benchmark measures:
- linear: frozen pooled backbone features of `train_passes` augmented passes over the training
  videos (random offset and crop, and the block's flip / scale jitter), and of `test_clips`
  evenly spaced, centrally cropped clips per test video; StandardScaler + linear SVM with the
  block's C (or C chosen by cross-validation among several), decision scores averaged over
  clips. `linear_top1` / `linear_top5` in percent.
- retrieval: each test video's `retrieval_clips` clip embeddings in S_vat averaged (normalised,
  averaged, normalised), against its first caption. `t2v_*`: captions query videos; `v2t_*`:
  videos query captions. R@k in percent, MedR / MeanR the median / mean rank (1 = first).
- image benchmarks (voc2007, imagenet, synthetic_images): each image a 1-frame record (short
  side resized to `min_resize`, central `crop_size` crop), embedded by the deflated video
  backbone (`embed_image`); the linear probe as above on one view per image (`train_augment`
  adds random-crop passes). VOC: one binary SVM per class, `linear_mAP` the mean of the
  VOC2007 devkit's 11-point APs in percent (difficult images left out), `linear_AP` per class.
- mlp (audioset): frozen audio features of `train_passes` random windows per training segment
  and `test_clips` evenly spaced windows per eval segment, every label of a segment kept
  (multi-hot); an MLP (`mlp_hidden`) trained with sigmoid cross-entropy on every device, logits
  averaged over the test windows. `mlp_mAP` and `mlp_AUC` (macro means over classes, percent)
  and `mlp_d_prime`; `mlp_AP` per class.
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

What the inputs decide (flags, config, files, the prepared videos, the training labels a
cross-validation splits) is checked before any feature is computed; every error ends the binary
in one line (`--verbose` shows the traceback).
"""

import copy
import json
import os
import sys
import time

from absl import app
from absl import flags
from ml_collections import config_flags
import tensorboardX
import tqdm

from mmv import benchmarks
from mmv import checkpoint as ckpt_lib
from mmv import evaluate_inputs
from mmv import evaluate_protocol
from mmv import evaluate_split
from mmv import inference
from mmv.evaluators import report


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
_VERBOSE = flags.DEFINE_bool('verbose', False, 'Tracebacks for errors, not one line.')
flags.mark_flags_as_required(['benchmark', 'data_dir', 'workdir'])


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
_PROBE_FIELDS = ('splits', 'classifier', 'svm_solver', 'svm_max_iter', 'c', 'cv_folds',
                 'zero_shot_template', 'mlp_hidden', 'mlp_epochs', 'mlp_batch_videos',
                 'mlp_learning_rate', 'mlp_weight_decay', 'mlp_dropout')


def feature_key(config, bench, workdir, step):
  """Everything besides the data that the features of `bench` depend on (a cache entry is
  valid for these): the model as evaluated, the checkpoint, the protocol and the dtype."""
  block = {k: v for k, v in evaluate_protocol.protocol(config, bench).items()
           if k not in _PROBE_FIELDS}
  return json.loads(json.dumps({
      'model': inference.model_config(config).model.to_dict(), 'dtype': config.eval.dtype,
      'checkpoint': checkpoint_identity(workdir, step), 'protocol': block}))


def evaluate_step(config, bench, prepared_splits, workdir, step, *, cache_features=True,
                  progress=True):
  """The record (see `report.make_record`) of checkpoint `step` on every prepared split, by
  the protocol `config.eval.NAME` (its `splits` are what `prepared_splits` should hold)."""
  evaluate_inputs.check_inputs(config, bench, prepared_splits)
  block = evaluate_protocol.protocol(config, bench)
  # Checkpoint → embeddings: one implementation, shared with the embedding API.
  checkpoint = inference.Checkpoint(config, workdir, step)
  cache_dir = (os.path.join(workdir, 'eval', bench.name, 'features', f'step_{step}')
               if cache_features else None)
  key = feature_key(config, bench, workdir, step)
  per_split, counts, unreadable = {}, {'listed': {}, 'read': {}, 'skipped': {}}, {}
  for split, prepared in prepared_splits.items():
    # One line per split, on a terminal only (disable=None), not a bar per feature set.
    with tqdm.tqdm(total=len(evaluate_split.feature_roles(config, bench, block)),
                   desc=f'{bench.name} split {prepared.split} step {step}', unit='set',
                   disable=None if progress else True, leave=False) as bar:
      evaluation = evaluate_split.SplitEvaluation(config, bench, prepared, step, checkpoint,
                                                  cache_dir, bar if progress else None, key)
      per_split[split] = evaluation.run()
    for what, per_role in counts.items():
      per_role[split] = {k: v[what] for k, v in evaluation.counts.items()}
    if any(evaluation.unreadable.values()):
      unreadable[split] = {k: v for k, v in evaluation.unreadable.items() if v}
  departures = [d for p in prepared_splits.values() for d in p.departures]
  settings = evaluate_protocol.protocol_settings(config, bench, list(prepared_splits),
                                                 departures)
  settings.update({f'videos_{what}': v for what, v in counts.items()})
  if unreadable:
    settings['unreadable_shards'] = unreadable
  settings['prepared'] = {s: p.summary() for s, p in prepared_splits.items()}
  return report.make_record(bench.name, step, config.model.video_backbone, settings, per_split,
                            run=evaluate_protocol.run_identity(config, workdir))


def prepare_splits(bench, config, data_dir, *, split=None, cache_dir=None, **options):
  """{split: Prepared} of `split` (default: the protocol's splits), videos converted at the
  protocol's frame rate; `options`: the other fields of `benchmarks.Options`."""
  block = evaluate_protocol.protocol(config, bench)
  splits = (str(split),) if split is not None else tuple(block.splits)
  if bench.modality != 'image':  # Images are 1-frame records: no frame rate to choose.
    options['fps'] = block.fps
  prepared = {}
  for s in splits:
    prepared.update(bench.prepare(data_dir, cache_dir=cache_dir, split=s, **options))
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


def _read_config(workdir, bench):
  """The config evaluated: --config, or the training run's (waiting for it with --watch), with
  the protocol fields added since it was written and --linear_c; checked."""
  config = _CONFIG.value
  while config is None:
    try:
      config = inference.read_run_config(workdir)
    except FileNotFoundError:
      if not _WATCH.value:
        raise
      time.sleep(_POLL_SECONDS.value)
  config, added = evaluate_protocol.with_new_fields(config)
  if added:
    fields = ', '.join(dict.fromkeys(name.split('.')[-1] for name in added))
    print(f'the config predates the protocol fields {fields}: eval.NAME.FIELD take their '
          'defaults', flush=True)
  if _LINEAR_C.value:
    try:
      c = tuple(float(c) for c in _LINEAR_C.value)
    except ValueError:
      raise ValueError(f'--linear_c takes numbers, got {",".join(_LINEAR_C.value)}') from None
    if 'linear' not in bench.protocols:
      raise ValueError(f'--linear_c sets the C of a linear probe; {bench.name} measures '
                       f'{", ".join(bench.protocols)}')
    config = copy.deepcopy(config)
    evaluate_protocol.protocol(config, bench).c = c
  evaluate_protocol.check_eval_config(config, bench)
  return config


def _single_step(workdir):
  """The checkpoint step evaluated without --watch (checked before any conversion)."""
  return ckpt_lib.workdir_step(workdir, _STEP.value)


def _evaluate(argv):
  if len(argv) > 1:
    raise ValueError(f'unexpected arguments: {argv[1:]}')
  if _WATCH.value and _STEP.value is not None:
    raise ValueError('--step and --watch exclude each other')
  ckpt_lib.start_reader()
  workdir = _WORKDIR.value
  bench = benchmarks.get(_BENCHMARK.value)
  config = _read_config(workdir, bench)
  step = None if _WATCH.value else _single_step(workdir)
  # Conversion (at the protocol's frame rate) runs now, while the training run may still be
  # writing its first checkpoint.
  prepared = prepare_splits(bench, config, _DATA_DIR.value, split=_SPLIT.value,
                            cache_dir=_CACHE_DIR.value, progress=_PROGRESS.value)
  for p in prepared.values():
    print(f'{bench.name} split {p.split}: {json.dumps(p.summary())}', flush=True)
  if _WATCH.value:  # Now, not once a checkpoint comes (`evaluate_step` checks each time).
    evaluate_inputs.check_inputs(config, bench, prepared)

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
      evaluate(step)
  except ckpt_lib.DamagedCheckpointError as e:
    raise ckpt_lib.DamagedCheckpointError(f'{e}; pass --step to evaluate another') from e
  finally:
    writer.close()
  if _OUTPUT.value:
    print(f'wrote {_OUTPUT.value}')


def _fail(message, hint):
  """Ends the binary with `message` in one line."""
  print(f'error: {" ".join(str(message).split())} ({hint})', file=sys.stderr, flush=True)
  sys.exit(1)


def parse_flags(argv):
  """absl's parsing, with a bad flag or config override in one line."""
  try:
    return flags.FLAGS(argv)
  except (flags.Error, KeyError, ValueError, TypeError) as e:
    if '--verbose' in argv:
      raise
    _fail(e.args[0] if isinstance(e, KeyError) and e.args else e, '--helpshort lists the flags')


def main(argv):
  try:
    _evaluate(argv)
  except Exception as e:  # pylint: disable=broad-except
    # Every error in one line: most are the inputs' (a file, a flag, the data), checked before
    # any feature is computed; the traceback is for the others.
    if _VERBOSE.value:
      raise
    _fail(e, '--verbose shows the traceback')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
