"""launch.py's command line, once for each of several argument lists, in one process: one
start-up (most of a launch that fails at once) for several mistakes.

    python tests/launch_each.py '[["--config", "configs/nope.py", "--workdir=W"], ...]'

For each list it does what `app.run(launch.main, flags_parser=launch.parse_flags)` does with
it as the command line (parse the flags, run `main`), then forgets the flags parsed (absl can
parse only once per process: the config's override flags are dropped). Prints one JSON line
per list: {"status": the exit status, or null if an exception escaped, "exception": its type's
name or null, "stderr": what was written to sys.stderr}.
"""

import contextlib
import io
import json
import sys

from absl import flags

import launch


def run(argv):
  stderr = io.StringIO()
  status, exception = None, None
  with contextlib.redirect_stderr(stderr):
    try:
      sys.argv = argv
      status = launch.main(launch.parse_flags(argv))
    except SystemExit as e:
      status = e.code
    except Exception as e:  # pylint: disable=broad-except  # What app.run lets escape.
      exception = type(e).__name__
  flags.FLAGS.unparse_flags()
  for name in [n for n in flags.FLAGS if n.startswith('config.')]:
    delattr(flags.FLAGS, name)
  return {'status': status, 'exception': exception, 'stderr': stderr.getvalue()}


if __name__ == '__main__':
  for args in json.loads(sys.argv[1]):
    print(json.dumps(run(['launch.py', *args])), flush=True)
