"""Deflates a trained (or imported) video model into an image model and re-fits its BatchNorm.

    python -m mmv.tools.deflate --workdir runs/demo --output runs/demo_image
    python -m mmv.tools.deflate --workdir runs/mmv_s3d_released --output runs/mmv_s3d_image \
        --config configs/mmv_s3d.py --data_dir DATA

The video backbone's kernels are summed over time (`mmv.models.deflate`), then its BatchNorm
scales and offsets are fitted, everything else frozen, so that its features of frames match the
video backbone's features of the static videos (each frame repeated over the clip): the L1
objective of the MMV paper, on the training data's frames (or those of `--data_dir`), no
labels (`mmv.deflate_fit`). Settings: the config's `deflate` block (steps, learning_rate,
batch_size, ...; its defaults for a run older than it), overridden by `--steps`,
`--learning_rate`, `--batch_size`. The batch is sharded over all devices as in training.
`--config` (an imported release has no config.json) is a config file FILE.py[:ARG] or a
config.json, `--data_dir` the data whose train and test splits give the frames (and where the
vocabulary is).

OUTPUT is a workdir that `mmv.inference.load` and `mmv.evaluate` read: config.json (the run's,
with `model.deflated` set) and checkpoints/ (the fitted image model at the last step), and
deflate.json (the source checkpoint and the L1 figures). It is written in OUTPUT.partial and
renamed when complete: a stopped fit (SIGTERM, Ctrl-C) saves its step there and the same
command resumes it. WORKDIR is only read. An existing OUTPUT is refused unless --overwrite,
which replaces only an earlier output of this tool (a directory holding deflate.json).
"""

import json
import os
import shutil
import tempfile

import argparse

import jax
import tqdm

from mmv import checkpoint as ckpt_lib
from mmv import deflate_fit
from mmv import inference
from mmv import preemption
from mmv import train_step as step_lib
from mmv.models import deflate
from mmv.tools import export

REPORT = 'deflate.json'
SOURCE = 'source.json'  # In OUTPUT.partial: what it is a fit of, so a resume fits the same.


class OutputError(FileExistsError):
  """An output that would overwrite something not this tool's."""


def settings(config, data_dir=None, **overrides):
  """`config` (unlocked copy) with `config.deflate` (added at its defaults to configs older
  than it), the overrides that are not None, and `data_dir` replacing the data."""
  config = inference.config_from_dict(json.loads(config.to_json_best_effort()))
  config.unlock()
  if 'deflate' not in config:
    config.deflate = deflate_fit.config_fields()
  for key, value in overrides.items():
    if value is not None:
      config.deflate[key] = value
  if data_dir is not None:
    config.data.data_dir, config.data.mixture = data_dir, ()
  config.model.deflated = False
  config.lock()
  return config


def check_output(workdir, output, overwrite):
  """Refuses an OUTPUT that is WORKDIR (or inside it), or exists and is not an earlier output
  of this tool (with --overwrite) or an empty directory."""
  source, target = os.path.realpath(workdir), os.path.realpath(output)
  if target == source or target.startswith(source + os.sep):
    raise OutputError(f'--output {output} is (inside) --workdir {workdir}: write beside it')
  if not os.path.lexists(output) or (os.path.isdir(output) and not os.listdir(output)):
    return
  if not overwrite:
    raise OutputError(f'--output {output} exists; pass --overwrite to replace an earlier '
                      'output of mmv.tools.deflate there')
  if not os.path.isfile(os.path.join(output, REPORT)):
    raise OutputError(f'--output {output} holds no {REPORT}: --overwrite replaces an earlier '
                      'output of mmv.tools.deflate only')


def _source(workdir, step, config):
  return {'workdir': os.path.abspath(workdir), 'step': int(step),
          'deflate': config.deflate.to_dict(), 'data_dir': config.data.data_dir}


def _partial_directory(output, source):
  """OUTPUT.partial, checked to be a fit of the same source (or created)."""
  partial = output.rstrip(os.sep) + '.partial'
  path = os.path.join(partial, SOURCE)
  if os.path.exists(path):
    with open(path) as f:
      earlier = json.load(f)
    if earlier != source:
      raise OutputError(f'{partial} holds a stopped fit of another source or settings '
                        f'({earlier}); remove it or choose another --output')
  elif os.path.lexists(partial) and os.listdir(partial):
    raise OutputError(f'{partial} exists and is no stopped fit of mmv.tools.deflate')
  if jax.process_index() == 0:
    os.makedirs(partial, exist_ok=True)
    with open(path, 'w') as f:
      json.dump(source, f, indent=1)
  return partial


def run(config, workdir, output, *, step=None, overwrite=False):
  """Deflates checkpoint `step` (latest by default) of `workdir` and re-fits its BatchNorm into
  the workdir `output`; returns the report (deflate.json) or None when stopped by a signal."""
  deflate_fit.check_method(config)
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f'no workdir {workdir}')
  check_output(workdir, output, overwrite)
  step = ckpt_lib.workdir_step(workdir, step)
  (video_model, video_vars, mesh), step = inference.restore(config, workdir, step)
  image_config = deflate.image_config(config)
  image_model = step_lib.create_model(inference.model_config(image_config))
  abstract = inference.abstract_variables(inference.model_config(image_config), image_model,
                                          mesh)
  paths = deflate_fit.refit_paths(abstract)
  d = config.deflate
  refit = deflate_fit.Refit(video_model, image_model, config.data.num_frames, paths,
                            deflate_fit.optimizer(d))
  deflated = deflate.placed_variables(video_vars, abstract)
  partial = _partial_directory(output, _source(workdir, step, config))
  state = refit.initial_state(deflated, mesh)
  checkpointer = ckpt_lib.Checkpointer(os.path.join(partial, 'checkpoints'), max_to_keep=1)
  signature = ckpt_lib.variable_signature(abstract)
  try:
    if checkpointer.latest_step() is not None:
      state, _ = checkpointer.restore(jax.tree.map(
          lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state),
          signature=signature)
      print(f'resumed the fit at step {int(state.step)} in {partial}', flush=True)
    held_out = deflate_fit.held_out_frames(config, mesh)
    before, scale = deflate_fit.mean_l1(refit, video_vars, deflated, held_out)
    state, first, last, stopped = _fit(config, refit, state, video_vars, mesh, checkpointer,
                                       signature)
    if stopped:
      return None
    after, _ = deflate_fit.mean_l1(refit, video_vars, deflate_fit.variables_of(state),
                                   held_out)
  finally:
    checkpointer.wait_until_finished()
    checkpointer.close()
  report = {**_source(workdir, step, config), 'steps': int(state.step),
            'refitted_variables': len(paths),
            'train_l1': {'first_step': first, 'last_steps': last},
            'held_out_l1': {'split': config.data.test_split, 'frames': _count(held_out),
                            'before': before, 'after': after,
                            'video_feature_mean_abs': scale}}
  if jax.process_index() == 0:
    with open(os.path.join(partial, 'config.json'), 'w') as f:
      f.write(image_config.to_json_best_effort(indent=1))
    with open(os.path.join(partial, REPORT), 'w') as f:
      json.dump(report, f, indent=1)
    os.remove(os.path.join(partial, SOURCE))
    _replace(partial, output)
  return report


def _count(batches):
  return int(sum(float(jax.device_get(mask).sum()) for _, mask in batches))


def _fit(config, refit, state, video_vars, mesh, checkpointer, signature):
  """The Adam steps after `state.step`: (state, L1 of the first step run, mean L1 of the last
  `log_every` steps, stopped by a signal)."""
  d = config.deflate
  start = int(state.step)
  frames = deflate_fit.train_frames(config, mesh, seed=config.seed + start)
  first, recent = None, []
  # Host arrays where one process holds them all: orbax writes those in seconds, device
  # arrays in a minute on a 2-core CPU (see haiku_release.save_step_zero).
  host = jax.device_get if jax.process_count() == 1 else (lambda s: s)
  save = lambda s: checkpointer.save(int(s.step), host(s), signature=signature)
  with preemption.PreemptionWatcher() as watcher:
    bar = tqdm.tqdm(range(start + 1, d.steps + 1), initial=start, total=d.steps,
                    desc='BN re-fit', unit='step', disable=jax.process_index() != 0 or None)
    for step in bar:
      state, value = refit.step(state, video_vars, next(frames))
      recent = (recent + [value])[-d.log_every:]
      if first is None:
        first = float(value)
      if step % d.log_every == 0:
        bar.set_postfix(l1=f'{float(sum(recent)) / len(recent):.4g}')
      stop = watcher.should_stop(step)
      if stop or step % d.checkpoint_every == 0 or step == d.steps:
        save(state)
      if stop:
        checkpointer.wait_until_finished()
        print(f'stopped: saved step {step} of the fit; run the same command again to resume',
              flush=True)
        return state, first, None, True
  if int(state.step) > start or checkpointer.latest_step() != int(state.step):
    save(state)
  last = float(sum(recent)) / len(recent) if recent else None
  return state, first, last, False


def _replace(partial, output):
  """Renames `partial` to `output`; an earlier output there is moved aside first and removed
  once the new one is in place."""
  if os.path.isdir(output) and os.listdir(output):
    aside = tempfile.mkdtemp(prefix=f'.{os.path.basename(output)}.old-',
                             dir=os.path.dirname(os.path.abspath(output)))
    os.rename(output, os.path.join(aside, 'output'))
    os.rename(partial, output)
    shutil.rmtree(aside)
  else:
    if os.path.isdir(output):
      os.rmdir(output)  # Empty.
    os.rename(partial, output)


def summary(report):
  """The one line of the L1 before and after."""
  h, t = report['held_out_l1'], report['train_l1']
  train = (f'training frames {t["first_step"]:.4g} (first step) → {t["last_steps"]:.4g} (last '
           'steps)' if t['first_step'] is not None and t['last_steps'] is not None else
           'no step run')
  return (f'L1 |deflated − video| per feature: held-out ({h["split"]}, {h["frames"]} frames) '
          f'{h["before"]:.4g} → {h["after"]:.4g} after {report["steps"]} steps (video features\' '
          f'mean |f| {h["video_feature_mean_abs"]:.4g}); {train}')


def parse_args(argv):
  parser = argparse.ArgumentParser(prog='python -m mmv.tools.deflate', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--workdir', required=True, help='The video model\'s workdir (only read).')
  parser.add_argument('--output', required=True, help='The image model\'s workdir to write.')
  parser.add_argument('--step', type=int, help='Checkpoint of WORKDIR; the latest when left out.')
  parser.add_argument('--config', help='The model\'s config when WORKDIR has no config.json (an '
                      'imported release): a config file FILE.py[:ARG], e.g. configs/mmv_s3d.py, '
                      'or a config.json.')
  parser.add_argument('--data_dir', help='Frames from this directory\'s train and test splits '
                      '(data.train_split, data.test_split) instead of the run\'s data.')
  parser.add_argument('--steps', type=int, help='deflate.steps')
  parser.add_argument('--learning_rate', type=float, help='deflate.learning_rate')
  parser.add_argument('--batch_size', type=int, help='deflate.batch_size')
  parser.add_argument('--overwrite', action='store_true',
                      help='Replace an earlier output of this tool in --output.')
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  ckpt_lib.start_reader()
  try:
    if not os.path.isdir(args.workdir):
      raise FileNotFoundError(f'no workdir {args.workdir}')
    config = (export.read_config(args.config) if args.config else
              inference.read_run_config(args.workdir))
    config = settings(config, args.data_dir, steps=args.steps,
                      learning_rate=args.learning_rate, batch_size=args.batch_size)
    report = run(config, args.workdir, args.output, step=args.step, overwrite=args.overwrite)
  except (FileNotFoundError, OutputError, ValueError, ckpt_lib.DamagedCheckpointError,
          ckpt_lib.IncompatibleCheckpointError) as e:
    raise SystemExit(f'error: {e}') from None
  if report is not None:
    print(f'wrote {args.output}: {summary(report)}', flush=True)


if __name__ == '__main__':
  main()
