"""A command's main run in the test process, as `python -m module ARGS` would run it: a launched
process costs ~3 CPU-seconds of imports (TensorFlow, JAX) before the command does anything, and
the test process has them already. For checks of what a command prints and writes; tests of
process behaviour (exit statuses, signals, two processes at once) still launch one."""

import contextlib
import importlib
import sys
from unittest import mock

from absl import flags

from mmv import checkpoint as ckpt_lib


@contextlib.contextmanager
def own_flags():
  """absl's global FLAGS emptied (so a command defines its flags afresh, whatever other commands
  this process defined), then restored as they were."""
  saved = dict(flags.FLAGS.__dict__)
  flags.FLAGS.__dict__.update(flags.FlagValues().__dict__)
  try:
    yield flags.FLAGS
  finally:
    flags.FLAGS.__dict__.clear()
    flags.FLAGS.__dict__.update(saved)


def run(module_name, args, *, known_only=False):
  """`python -m module_name *args` in this process: the module's flags defined (its
  define_flags(), or its import for a module that defines them at import) and parsed as absl's
  app.run parses them, then its main. Returns None or raises SystemExit as main does (a message:
  what the process prints to stderr, status 1). The checkpoint reader's start-up (TensorFlow off
  the GPU, absl logging at WARNING) is left out: it would change this process's logging."""
  with own_flags(), mock.patch.object(ckpt_lib, 'start_reader', lambda: None):
    if module_name in sys.modules and not hasattr(sys.modules[module_name], 'define_flags'):
      del sys.modules[module_name]  # Defines its flags at import: imported again, into these.
    module = importlib.import_module(module_name)
    if hasattr(module, 'define_flags'):
      module.define_flags()
    rest = flags.FLAGS([module_name, *map(str, args)], known_only=known_only)
    return module.main(rest)
