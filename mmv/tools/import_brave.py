"""Converts a released BraVe checkpoint (google-deepmind/brave README: .npy) into a checkpoint
of this framework.

    python -m mmv.tools.import_brave 29466668_1_0.npy runs/brave_va_released \
        --config configs/brave.py
    python -m mmv.evaluate --config configs/brave.py --workdir runs/brave_va_released ...

`--config` is the model the weights go into (method brave); the release's own config must agree
with it (broad view video/audio, TSM width, projection size: configs/brave.py is the V/A model;
`--config.brave.broad_video=True` for V/VVV). Every variable of the model must come from the
file with its shape and every array of the file must be used (mmv/tools/brave_checkpoint.py
lists the mapping); otherwise nothing is written and the error lists what differs. The file is
read by an allow-list unpickler, never by np.load(allow_pickle=True). A mistake ends in one
`error:` line and exit status 1; `--verbose` shows the traceback.
"""

import os
import pickle

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
import tensorflow as tf

from mmv.tools import brave_checkpoint

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config of the target model.',
                                          lock_config=True)
_VERBOSE = flags.DEFINE_bool('verbose', False, 'Tracebacks for errors, not one line.')
flags.mark_flags_as_required(['config'])

_USER_ERRORS = (OSError, pickle.UnpicklingError, brave_checkpoint.IncompatibleReleaseError)


def main(argv):
  if len(argv) != 3:
    raise app.UsageError('usage: python -m mmv.tools.import_brave IN.npy OUT_DIR --config '
                         'CONFIG')
  tf.config.set_visible_devices([], 'GPU')
  logging.set_verbosity(logging.WARNING)
  try:
    counts = brave_checkpoint.import_release(argv[1], _CONFIG.value, argv[2])
  except _USER_ERRORS as e:
    if _VERBOSE.value:
      raise
    raise SystemExit(f'error: {e} (--verbose shows the traceback)') from None
  print(f'imported {counts["params"]} parameters and {counts["batch_stats"]} BN statistics '
        f'into {os.path.join(argv[2], "checkpoints", "0")}')


if __name__ == '__main__':
  app.run(main)
