"""A conversion stopped at its k-th file operation, as a killed process stops, and what a
directory then shows of a split's shard sets."""

import contextlib
import os
import re

import tensorflow as tf

# What changes what a directory shows: renames and removals, through Python or TensorFlow.
_OPERATIONS = [(os, 'replace'), (os, 'rename'), (os, 'remove'), (os, 'unlink'), (os, 'rmdir'),
               (tf.io.gfile, 'rename'), (tf.io.gfile, 'remove'), (tf.io.gfile, 'rmtree')]


@contextlib.contextmanager
def cut_at(k, counts):
  """Within it, the k-th file operation on a path that `counts(path)` and every one after it
  raise OSError: the process is dead from there on (no clean-up either). Yields a dict whose
  'operations' counts those operations met."""
  met = {'operations': 0}
  originals = [(module, name, getattr(module, name)) for module, name in _OPERATIONS]

  def wrap(original, name):
    def operation(*args, **kwargs):
      path = str(args[1] if name in ('replace', 'rename') else args[0])
      if counts(path):
        met['operations'] += 1
        if met['operations'] >= k:
          raise OSError(f'cut short at file operation {k}')
      return original(*args, **kwargs)
    return operation

  for module, name, original in originals:
    setattr(module, name, wrap(original, name))
  try:
    yield met
  finally:
    for module, name, original in originals:
      setattr(module, name, original)


def shard_sets(directory, name):
  """{shard count: {file name: bytes}} of the files `NAME-INDEX-of-COUNT` in `directory`."""
  sets = {}
  for filename in os.listdir(directory):
    match = re.fullmatch(re.escape(name) + r'-\d+-of-(\d+)', filename)
    if match:
      with open(os.path.join(directory, filename), 'rb') as f:
        sets.setdefault(int(match[1]), {})[filename] = f.read()
  return sets


def check_one_set(directory, name, complete_sets):
  """Asserts that `directory` shows at most one set of `name`'s shards, and that a complete
  one is one of `complete_sets` ({file name: bytes}) whole, not a mix."""
  sets = shard_sets(directory, name)
  assert len(sets) <= 1, f'two shard sets visible: {sorted(map(sorted, sets.values()))}'
  for count, files in sets.items():
    if len(files) == count:
      assert files in complete_sets, f'a set of old and new shards: {sorted(files)}'
