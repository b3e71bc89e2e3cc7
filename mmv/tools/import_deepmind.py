"""Converts a released DeepMind MMV checkpoint into a checkpoint of this framework.

    python -m mmv.tools.import_deepmind mmv_s3d.pkl runs/mmv_s3d_released \
        --config configs/mmv_s3d.py --config.data.data_dir=DATA
    python -m mmv.evaluate --config configs/mmv_s3d.py --config.data.data_dir=DATA \
        --workdir runs/mmv_s3d_released

`--config` is the model the weights go into: the released checkpoints are fac_relu heads with an
audio ResNet-50 and S3D-G (space-to-depth stem, as configs/mmv_s3d.py) or TSM-ResNet50 x1 / x2.
Every variable of the model must come from the file with its shape, and every array of the file
must be used (`mmv.tools.deepmind_names` lists the mapping); otherwise nothing is written and
the error lists what differs. The text embedding matrix is copied row by row, so the dataset's
vocabulary must list the released vocabulary in its id order (`len(vocab) + 2` rows).

The pickle is read by an allow-list unpickler: numpy arrays in plain containers, and the release
files as DeepMind wrote them (dill, Haiku's FlatMapping, jax's DeviceArray, read as dicts and
numpy arrays); anything else is refused before it can run. The result is step 0 of
OUT_DIR/checkpoints; an OUT_DIR that already holds checkpoints is refused first, before the
conversion. A mistake (a path, a file that is not a pickle, is refused or does not fit the config,
an OUT_DIR in use) ends in one `error:` line and exit status 1; `--verbose` shows the traceback.
"""

import os
import pickle

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
import tensorflow as tf

from mmv.tools import deepmind_checkpoint

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config of the target model.',
                                          lock_config=True)
_VERBOSE = flags.DEFINE_bool('verbose', False, 'Tracebacks for errors, not one line.')
flags.mark_flags_as_required(['config'])

# Errors from what the user gave: paths (OSError: missing, unreadable, OUT_DIR in use), a file
# that is not a pickle or is refused (UnpicklingError), a release that does not fit the config.
_USER_ERRORS = (OSError, pickle.UnpicklingError, deepmind_checkpoint.IncompatibleReleaseError)


def main(argv):
  if len(argv) != 3:
    raise app.UsageError('usage: python -m mmv.tools.import_deepmind IN.pkl OUT_DIR --config '
                         'CONFIG')
  tf.config.set_visible_devices([], 'GPU')
  logging.set_verbosity(logging.WARNING)
  try:
    counts = deepmind_checkpoint.import_release(argv[1], _CONFIG.value, argv[2])
  except _USER_ERRORS as e:
    if _VERBOSE.value:
      raise
    raise SystemExit(f'error: {e} (--verbose shows the traceback)') from None
  print(f'imported {counts["params"]} parameters and {counts["batch_stats"]} BN statistics '
        f'into {os.path.join(argv[2], "checkpoints", "0")}')


if __name__ == '__main__':
  app.run(main)
