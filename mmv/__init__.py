"""mmv: self-supervised multimodal (video, audio, text) representation learning in JAX.

Importing mmv, before TensorFlow is first imported, quiets TensorFlow's start-up lines on the
command lines ('WARNING: All log messages before absl::InitializeLog() is called ...',
'oneDNN custom operations are on ...', 'This TensorFlow binary is optimized ...'):
`TF_CPP_MIN_LOG_LEVEL=2` (TensorFlow's C++ info and warnings; the oneDNN line ignores it) and
`TF_ENABLE_ONEDNN_OPTS=0` (TensorFlow's oneDNN kernels off, so the numbers do not depend on a
TensorFlow build's having them; measured on the demo: its dataset, 50 training steps and the
evaluation are the same either way). A value already in the
environment is kept; `MMV_VERBOSE=1` leaves TensorFlow's log level alone (its lines return).
"""

import os

VERBOSE_ENV = 'MMV_VERBOSE'


def verbose():
  """True when the environment asks for TensorFlow's start-up lines (MMV_VERBOSE=1)."""
  return os.environ.get(VERBOSE_ENV, '').strip().lower() not in ('', '0', 'false', 'no')


os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
if not verbose():
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
