"""Finding the files of a dataset under its root: media files by name, and annotation files.

Downloads of the same dataset differ in where they put files (a split directory or not,
`.mp4` or `.webm`), so readers look media up by the file's name without extension, anywhere
under the root. Hidden directories (among them the `.mmv_cache` that `prepare` writes) are not
searched.
"""

import os

MEDIA_EXTENSIONS = frozenset({'.mp4', '.avi', '.mkv', '.webm', '.mov', '.m4v', '.flv', '.mpg',
                              '.mpeg', '.3gp', '.ogv', '.wav', '.flac', '.mp3', '.ogg'})


def _walk(root):
  for directory, subdirs, files in os.walk(root):
    subdirs[:] = sorted(d for d in subdirs if not d.startswith('.'))
    yield directory, sorted(files)


def media_by_stem(root):
  """{file name without extension: [paths]} of the media files under `root`, each list
  sorted, shallowest first."""
  index = {}
  for directory, files in _walk(root):
    for name in files:
      stem, ext = os.path.splitext(name)
      if ext.lower() in MEDIA_EXTENSIONS:
        index.setdefault(stem, []).append(os.path.join(directory, name))
  return {stem: sorted(paths, key=lambda p: (p.count(os.sep), p)) for stem, paths in index.items()}


def find_file(root, name):
  """The path of the file called `name` under `root` (the shallowest), or None."""
  found = [os.path.join(d, name) for d, files in _walk(root) if name in files]
  return min(found, key=lambda p: (p.count(os.sep), p)) if found else None


def require_file(root, name, what):
  """`find_file`, or a FileNotFoundError saying what the file is for."""
  path = find_file(root, name)
  if path is None:
    raise FileNotFoundError(f'no {name} ({what}) under {root!r}')
  return path
