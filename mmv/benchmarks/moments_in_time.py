"""Moments in Time (Monfort et al. 2019, MIT-IBM): 3-second videos of 339 action classes,
about 800k training and 33,900 validation videos.

Layout (the official archive extracted; DIR may also hold it one directory down):

    DIR/moments_categories.txt   `name,index` per line, index from 0 (the label ids)
    DIR/trainingSet.csv          `class/file.mp4,class,...` per line (more columns ignored)
    DIR/validationSet.csv
    DIR/training/<class>/<file>.mp4
    DIR/validation/<class>/<file>.mp4

One split, 'validation': train on the training list, test on the validation list, each list a
part converted once. Label id = the class's index in moments_categories.txt. A listed video
that is not on disk is skipped and counted; a row whose class is not a category, or whose
class column is not its path's directory, is an error naming the file and line. Clips are
named by their path under DIR (`validation/<class>/<file>.mp4`).
"""

import csv
import functools
import os

from mmv.benchmarks import benchmark as bm
from mmv.benchmarks import protocols
from mmv.benchmarks import sources

SPLIT = 'validation'
CATEGORIES = 'moments_categories.txt'
LISTS = {'training': 'trainingSet.csv', 'validation': 'validationSet.csv'}  # part → list.
LAYOUT = (f'DIR/{CATEGORIES}, DIR/{{trainingSet,validationSet}}.csv and '
          'DIR/{training,validation}/<class>/*.mp4')


def find_root(data_dir):
  """The directory holding moments_categories.txt: `data_dir` or one of its subdirectories."""
  if os.path.exists(os.path.join(data_dir, CATEGORIES)):
    return data_dir
  if os.path.isdir(data_dir):
    for name in sorted(os.listdir(data_dir)):
      if os.path.exists(os.path.join(data_dir, name, CATEGORIES)):
        return os.path.join(data_dir, name)
  raise FileNotFoundError(f'no {CATEGORIES} in {data_dir!r} or a directory in it (expected '
                          f'{LAYOUT})')


def _rows(path):
  """[(line number, row)] of a CSV, blank lines left out."""
  if not os.path.exists(path):
    raise FileNotFoundError(f'missing the official list {path} (expected {LAYOUT})')
  with open(path, newline='') as f:
    reader = csv.reader(f)
    return [(reader.line_num, row) for row in reader if any(v.strip() for v in row)]


def read_categories(path):
  """Class names in index order (moments_categories.txt's indices checked)."""
  by_index = {}
  for line, row in _rows(path):
    try:
      name, index = row[0].strip(), int(row[1])
    except (IndexError, ValueError):
      raise ValueError(f'{path} line {line}: expected `name,index`, got {",".join(row)!r}'
                       ) from None
    if by_index.setdefault(index, name) != name:
      raise ValueError(f'{path} line {line}: index {index} is both {by_index[index]!r} and '
                       f'{name!r}')
  if sorted(by_index) != list(range(len(by_index))) or not by_index:
    raise ValueError(f'{path}: indices are not 0, 1, 2, ... (got {sorted(by_index)[:5]}...)')
  names = tuple(by_index[i] for i in range(len(by_index)))
  if len(set(names)) != len(names):
    raise ValueError(f'{path}: a class is listed twice')
  return names


def read_list(root, part, class_names):
  """The ClipSpecs of the videos `LISTS[part]` lists (path None when not on disk)."""
  path = os.path.join(root, LISTS[part])
  known = set(class_names)
  specs = {}
  for line, row in _rows(path):
    relative = row[0].strip().replace('\\', '/')
    directory = relative.split('/')[0]
    if line == 1 and '/' not in relative:
      continue  # A header.
    label = row[1].strip() if len(row) > 1 else directory
    if label not in known:
      raise ValueError(f'{path} line {line}: class {label!r} of {relative} is not in '
                       f'{CATEGORIES}')
    if directory != label:
      raise ValueError(f'{path} line {line}: {relative} is listed as class {label!r}, not its '
                       f'directory {directory!r}')
    name = f'{part}/{relative}'
    video = os.path.join(root, part, relative)
    specs[name] = bm.clip(name, video if os.path.exists(video) else None, labels=[label])
  return [specs[k] for k in sorted(specs)]  # A video listed twice is converted once.


def read_layout(data_dir):
  root = find_root(data_dir)
  class_names = read_categories(os.path.join(root, CATEGORIES))
  clips = {part: read_list(root, part, class_names) for part in LISTS}
  return bm.Layout(clips=clips, splits={SPLIT: {'train': ['training'], 'test': ['validation']}},
                   class_names=class_names)


BENCHMARK = bm.Benchmark(
    name='moments_in_time', kind='linear', modality='video', protocols=('linear', 'zero_shot'),
    splits=(SPLIT,), fps=protocols.DEFAULTS['moments_in_time']['fps'], layout=LAYOUT,
    prepare_fn=functools.partial(sources.prepare, read_layout=read_layout))
