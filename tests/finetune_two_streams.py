"""`mmv.finetune` on the synthetic benchmark in one process that reads the input as two
processes would (`two_streams.two_stream_batches`), for comparison with a two-process run.

    python tests/finetune_two_streams.py --data_dir D --workdir PRETRAINED --output DIR \
        --config configs/finetune_synthetic.py [--config.x=y ...]
"""

from absl import app
from absl import flags

from mmv import benchmarks
from mmv import finetune
from mmv import inference
from tests import two_streams  # Defines --config and --workdir.

_DATA_DIR = flags.DEFINE_string('data_dir', None, 'The synthetic benchmark.')
_OUTPUT = flags.DEFINE_string('output', None, 'The fine-tuning run\'s workdir.')


def main(argv):
  del argv
  f = flags.FLAGS
  _, summary = finetune.run(f.config, inference.read_run_config(f.workdir),
                            benchmarks.get('synthetic'), _DATA_DIR.value, f.workdir,
                            _OUTPUT.value, input_fn=two_streams.two_stream_batches)
  print(f'finished at step {summary["step"]}', flush=True)


if __name__ == '__main__':
  app.run(main)
