r"""Where the test suite's time goes: every test's wall and CPU seconds, summed per file.

    python bench/test_times.py [--fast] [--top 25] [-- PYTEST_ARGS...]

Runs `pytest -n 2 --dist loadfile tests` (as `make test`; `--fast` as `make test-fast`:
`-m 'not slow'`) with MMV_TEST_TIMES set, which makes tests/conftest.py write each test's wall
seconds and CPU seconds (its pytest process, and apart the subprocesses it waited for) as it
runs. Prints the suite's wall time, the CPU seconds of all tests, and the files and tests that
cost most, each with whether it is marked `slow` (left out of the unit tier). CPU seconds hardly
move when other jobs share the machine; wall seconds do.
"""

import argparse
import collections
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(fast, dist, pytest_args):
  times = tempfile.mkdtemp(prefix='mmv-test-times-')
  args = [sys.executable, '-m', 'pytest', '-q', '-n', '2', '-p', 'no:cacheprovider']
  args += [f'--dist={dist}']
  args += ['-m', 'not slow'] if fast else []
  start = time.perf_counter()
  status = subprocess.call(args + (pytest_args or ['tests']), cwd=ROOT,
                           env=dict(os.environ, MMV_TEST_TIMES=times))
  wall = time.perf_counter() - start
  lines = []
  for path in glob.glob(os.path.join(times, '*.jsonl')):
    with open(path) as f:
      lines += [json.loads(line) for line in f]
  return status, wall, lines


def report(status, wall, lines, top):
  print(f'\npytest exit {status}: {len(lines)} tests in {wall:.0f} s wall; CPU of the tests '
        f'{sum(t["cpu_s"] for t in lines):.0f} s (slow-marked '
        f'{sum(t["cpu_s"] for t in lines if t["slow"]):.0f} s; in subprocesses '
        f'{sum(t.get("subprocess_cpu_s", 0) for t in lines):.0f} s)')
  files = collections.defaultdict(lambda: [0, 0.0, 0.0, 0])
  for t in lines:
    f = files[t['test'].split('::')[0]]
    f[0] += 1
    f[1] += t['wall_s']
    f[2] += t['cpu_s']
    f[3] += t['slow']
  print(f'\n{"file":44s} {"tests":>5s} {"slow":>4s} {"wall_s":>7s} {"cpu_s":>7s}')
  for name, (n, w, c, s) in sorted(files.items(), key=lambda kv: -kv[1][2])[:top]:
    print(f'{name:44s} {n:5d} {s:4d} {w:7.1f} {c:7.1f}')
  print(f'\n{"test":80s} {"slow":>4s} {"wall_s":>7s} {"cpu_s":>7s}')
  for t in sorted(lines, key=lambda t: -t['cpu_s'])[:top]:
    print(f'{t["test"][:80]:80s} {"yes" if t["slow"] else "":>4s} {t["wall_s"]:7.1f} '
          f'{t["cpu_s"]:7.1f}')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--fast', action='store_true', help="the unit tier: -m 'not slow'")
  parser.add_argument('--dist', default='loadfile', help='pytest-xdist --dist mode (default '
                      'loadfile, as make test: a test file\'s module fixtures are made once)')
  parser.add_argument('--top', type=int, default=25, help='files and tests listed')
  parser.add_argument('--json', help='also write every test\'s line to this file')
  parser.add_argument('pytest_args', nargs='*', help='after --: pytest arguments (default tests)')
  args = parser.parse_args()
  status, wall, lines = run(args.fast, args.dist, args.pytest_args)
  if args.json:
    with open(args.json, 'w') as f:
      json.dump({'wall_s': wall, 'status': status, 'tests': lines}, f, indent=1)
  report(status, wall, lines, args.top)
  return status


if __name__ == '__main__':
  sys.exit(main())
