"""Fine-tunes a trained video backbone with a linear classifier on UCF101 or HMDB51 (the FT
columns of the MMV table), then tests it.

    python -m mmv.finetune --benchmark ucf101 --data_dir D --workdir W --output W_FT \
        [--split N] [--step S] [--config configs/finetune_ucf101.py --config.finetune.X=...]

W is a training run's workdir (only read; an imported release without config.json: add
`--pretrained_config configs/mmv_s3d.py`); its checkpoint S (the latest by default) gives the
video backbone. Fine-tuning is the method 'finetune' (mmv/methods/finetune.py) trained by
`mmv.train` into W_FT, as any run: sharded over all devices and hosts, orbax checkpoints,
SIGTERM / Ctrl-C save and the same command resumes exactly, metrics.jsonl and TensorBoard. Its
settings are the config's `finetune` block (`--config`, by default configs/finetune_NAME.py:
GDT's released protocol where the MMV paper's values are not at hand). D is the benchmark in
its official layout (converted once at `finetune.fps` into D/.mmv_cache, or --cache_dir, as
`mmv.evaluate` does); the run trains on split N's training videos (default 1).

Then the fine-tuned model is tested on split N's test videos (`finetune.test_clips` clips ×
`finetune.test_crops` crops, softmax scores averaged): top-1 / top-5 in the record
W_FT/eval/NAME/finetune_step_K_split_N.{json,md} (every setting that ran, where each value comes
from and which no source states), TensorBoard scalars `eval/NAME/finetune_top*`, and --record.
The test runs in one process: a multi-host run ends after training, and the same command run
once more as one process tests it (a finished run is not trained again).
"""

import json
import os
import sys

import mmv  # pylint: disable=unused-import  # First: quiets TensorFlow's start-up lines.

from absl import app
from absl import flags
import jax
from ml_collections import config_flags
import tensorboardX

from mmv import benchmarks
from mmv import checkpoint as ckpt_lib
from mmv import distributed
from mmv import finetune_eval
from mmv import finetune_protocol
from mmv import inference
from mmv import train
from mmv.evaluators import report
from mmv.tools import export

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def default_config_file(name):
  return os.path.join(ROOT, 'configs', f'finetune_{name}.py')


def define_flags():
  """The command line (defined only when run, so importing this module defines no flags)."""
  flags.DEFINE_enum('benchmark', None, sorted(benchmarks.BENCHMARKS),
                    'Benchmark to fine-tune on (ucf101, hmdb51, synthetic).')
  flags.DEFINE_string('data_dir', None, 'The benchmark in its official layout.')
  flags.DEFINE_string('workdir', None, 'The pretrained run\'s workdir (only read).')
  flags.DEFINE_string('output', None, 'The fine-tuning run\'s workdir.')
  flags.DEFINE_string('split', None, 'Official split (default: the first).')
  flags.DEFINE_integer('step', None, 'Pretrained checkpoint; the latest when left out.')
  config_flags.DEFINE_config_file(
      'config', None, 'Fine-tuning config file; default configs/finetune_NAME.py.',
      lock_config=True)
  flags.DEFINE_string('pretrained_config', None, 'The pretrained model\'s config when WORKDIR '
                      'has no config.json (an imported release): FILE.py[:ARG] or a config.json.')
  flags.DEFINE_string('cache_dir', None,
                      'Where converted shards go (default DATA_DIR/.mmv_cache).')
  flags.DEFINE_string('record', None, 'Also write the test\'s record (JSON) here.')
  flags.DEFINE_string('coordinator_address', None, 'HOST:PORT of process 0 for jax.distributed.')
  flags.DEFINE_integer('num_processes', None, 'Number of processes (hosts).')
  flags.DEFINE_integer('process_id', None, 'Index of this process.')
  flags.DEFINE_bool('verbose', False, 'Tracebacks for errors, not one line.')
  flags.mark_flags_as_required(['benchmark', 'data_dir', 'workdir', 'output'])


def finetune_config(name, config=None):
  """`config` (--config), or configs/finetune_NAME.py (locked)."""
  if config is not None:
    return config
  path = default_config_file(name)
  if not os.path.exists(path):
    raise FileNotFoundError(f'no fine-tuning config for {name} ({path}); pass --config')
  config = export.read_config(path)
  config.lock()
  return config


def prepare(bench, config, data_dir, split, cache_dir):
  """The prepared split (converted at `finetune.fps`); with several processes, process 0
  converts first and the others then read its cache."""
  if bench.kind != 'linear' or bench.modality != 'video':
    raise ValueError(f'{bench.name} has no labelled training videos to fine-tune on')
  split = str(split or bench.splits[0])

  def run():
    return bench.prepare(data_dir, cache_dir=cache_dir, split=split,
                         fps=config.finetune.fps, progress=jax.process_index() == 0)[split]

  if jax.process_count() == 1:
    return run()
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  prepared = run() if jax.process_index() == 0 else None
  multihost_utils.sync_global_devices('benchmark prepared')
  return prepared or run()


def completed_step(output):
  steps = ckpt_lib.existing_steps(os.path.join(output, 'checkpoints'))
  return steps[-1] if steps else 0


def publish(record, output, split):
  """The record and its report under OUTPUT/eval/NAME, its scalars in TensorBoard."""
  name = f'finetune_step_{record["step"]}_split_{split}'
  paths = report.write(record, os.path.join(output, 'eval', record['benchmark']), name)
  writer = tensorboardX.SummaryWriter(os.path.join(output, 'tensorboard', 'eval'))
  for tag, value in report.scalars(record):
    writer.add_scalar(f'eval/{tag}', value, record['step'])
  writer.close()
  print(report.render_markdown(record), flush=True)
  return paths[0]


def run(ft_config, pretrained, bench, data_dir, workdir, output, *, split=None, step=None,
        cache_dir=None, input_fn=train.input_batches):
  """Fine-tunes (or resumes) and tests; returns (record or None, the training summary or None).
  None record: preempted, or several processes (the test is single-process). `input_fn`: as
  `train.train`'s."""
  if step is None and os.path.exists(os.path.join(output, 'config.json')):
    # Resuming (or testing) a run: the checkpoint it started from, not a newer one since.
    started = inference.read_run_config(output).finetune.pretrained_step
    step = started if started >= 0 else None
  step = ckpt_lib.workdir_step(workdir, step)
  prepared = prepare(bench, ft_config, data_dir, split, cache_dir)
  config = finetune_protocol.run_config(ft_config, pretrained, prepared,
                                        pretrained_workdir=os.path.abspath(workdir),
                                        pretrained_step=step)
  summary = None
  if completed_step(output) < config.train.steps:
    summary = train.train(config, output, input_fn=input_fn)
    if summary['preempted']:
      return None, summary
  if jax.process_count() > 1:
    if jax.process_index() == 0:
      print('fine-tuning done; the test runs in one process: run the same command without '
            '--num_processes to test it', flush=True)
    return None, summary
  return finetune_eval.evaluate(config, output, config.train.steps, prepared), summary


def _main(argv):
  if len(argv) > 1:
    raise ValueError(f'unexpected arguments: {argv[1:]}')
  ckpt_lib.start_reader()
  f = flags.FLAGS
  distributed.initialize(f.coordinator_address, f.num_processes, f.process_id)
  bench = benchmarks.get(f.benchmark)
  if not f.pretrained_config and not os.path.exists(os.path.join(f.workdir, 'config.json')):
    raise FileNotFoundError(f'no {f.workdir}/config.json: pass the pretrained model\'s config '
                            'with --pretrained_config (e.g. configs/mmv_s3d.py for an imported '
                            'release)')
  pretrained = (export.read_config(f.pretrained_config) if f.pretrained_config
                else inference.read_run_config(f.workdir))
  record, summary = run(finetune_config(bench.name, f.config), pretrained, bench, f.data_dir,
                        f.workdir, f.output, split=f.split, step=f.step,
                        cache_dir=f.cache_dir)
  if summary and summary['preempted']:
    print(f'preempted at step {summary["step"]}; run the same command to resume', flush=True)
    return 130 if summary['preempted'] == 'SIGINT' else 0
  if record is None:
    return 0
  path = publish(record, f.output, record['protocol']['splits'][0])
  if f.record:
    os.makedirs(os.path.dirname(os.path.abspath(f.record)), exist_ok=True)
    with open(f.record, 'w') as out:
      json.dump(record, out, indent=1)
  print(f'wrote {path}', flush=True)
  return 0


def main(argv):
  try:
    return _main(argv)
  except Exception as e:  # pylint: disable=broad-except
    if flags.FLAGS.verbose:
      raise
    print(f'error: {" ".join(str(e).split())} (--verbose shows the traceback)', file=sys.stderr,
          flush=True)
    return 1


def parse_flags(argv):
  """absl's parsing, with a bad flag or config override (a typo) in one line."""
  try:
    return flags.FLAGS(argv)
  except (flags.Error, KeyError, AttributeError, ValueError, TypeError) as e:
    if '--verbose' in argv:
      raise
    message = str(e.args[0] if isinstance(e, (KeyError, AttributeError)) and e.args else e)
    # ml_collections' unknown field: the repr of a KeyError inside an AttributeError.
    if 'Did you mean' in message:
      message = message.replace('\\n', ' ').replace("\\'", '').strip('\'')
      message = f'no such config field: {message}'
    print(f'error: {" ".join(message.split())} (--helpshort lists the flags)',
          file=sys.stderr, flush=True)
    sys.exit(1)


if __name__ == '__main__':
  define_flags()
  app.run(main, flags_parser=parse_flags)
