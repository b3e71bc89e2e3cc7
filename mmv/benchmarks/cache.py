"""Converting a benchmark once into shards, and a directory per split that the pipeline reads.

    CACHE/NAME/parts/   labels.txt (official order), vocab.txt (caption words, if captions),
                        PART-00000-of-0000N ...  one shard set per part of the layout,
                        PART.json                written last: the part is complete
    CACHE/NAME/SPLIT/   train-*-of-*, test-*-of-*  links to the shards of the split's parts,
                        labels.txt, vocab.txt      links too; split.json written last

CACHE is `DATA_DIR/.mmv_cache` unless given. A video is decoded once, into the one part it
belongs to, whatever the number of splits; a split's directory only links shards, so the
pipeline reads it as any dataset (`data.data_dir = CACHE/NAME/SPLIT`, splits 'train' and
'test'). Each part's marker keeps a digest of what made it (its clips, the class list and the
conversion options): a part whose inputs changed (a video added to the disk, other options) is
converted again, any other is reused as it is.
"""

import glob
import hashlib
import json
import math
import os

from mmv.benchmarks import benchmark as bm
from mmv.ingest import convert
from mmv.data import format as fmt
from mmv.ingest import text_files

PARTS = 'parts'
DONE = 'split.json'


def cache_dir_for(benchmark_name, data_dir, cache_dir=None):
  return os.path.join(cache_dir or os.path.join(data_dir, '.mmv_cache'), benchmark_name)


def _write_json(path, value):
  with open(path + '.tmp', 'w') as f:
    json.dump(value, f, indent=1)
  os.replace(path + '.tmp', path)


def _read_json(path):
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def write_text_if_changed(path, lines):
  """Writes `lines` to `path` unless it already holds exactly them."""
  text = ''.join(f'{line}\n' for line in lines)
  if os.path.exists(path):
    with open(path) as f:
      if f.read() == text:
        return
  with open(path + '.tmp', 'w') as f:
    f.write(text)
  os.replace(path + '.tmp', path)


def digest(value):
  return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _spec_record(spec, data_dir):
  path = None if spec.path is None else os.path.relpath(spec.path, data_dir)
  return [spec.name, path, spec.start, spec.end, list(spec.labels), list(spec.captions)]


def cached_part(parts_dir, part, key):
  """The marker of `part` if it is complete and was made from `key`, else None."""
  marker = _read_json(os.path.join(parts_dir, f'{part}.json'))
  if marker is None or marker['key'] != key:
    return None
  if not all(os.path.exists(os.path.join(parts_dir, s)) for s in marker['shards']):
    return None
  return marker


def clear_part(parts_dir, part):
  """Removes a part's marker and shards (including unfinished ones)."""
  marker = os.path.join(parts_dir, f'{part}.json')
  if os.path.exists(marker):
    os.remove(marker)  # First: a part without its marker is incomplete.
  for path in glob.glob(os.path.join(glob.escape(parts_dir), f'{glob.escape(part)}-*-of-*')):
    os.remove(path)


def write_part(parts_dir, part, key, write):
  """Runs `write()` → (converter report, fps) unless the part is cached; returns the
  marker {key, shards, written, skipped, fps}."""
  marker = cached_part(parts_dir, part, key)
  if marker is not None:
    return marker
  clear_part(parts_dir, part)
  report, fps = write()
  marker = {'key': key, 'shards': [os.path.basename(s) for s in report['shards']],
            'written': report['written'], 'skipped': [list(s) for s in report['skipped']],
            'fps': fps}
  _write_json(os.path.join(parts_dir, f'{part}.json'), marker)  # Last: the part is complete.
  return marker


def _convert_part(specs, parts_dir, part, options, fps, audio):
  num_shards = max(1, math.ceil(len(specs) / options.clips_per_shard))
  report = convert.convert(
      specs, parts_dir, name=part, num_shards=num_shards, fps=fps,
      short_side=options.short_side, sample_rate=options.sample_rate,
      num_workers=options.num_workers, jpeg_qscale=options.jpeg_qscale,
      label_map_path=os.path.join(parts_dir, fmt.LABEL_MAP), audio=audio,
      progress=options.progress)
  return report, fps


def _link_split(root, split, roles, markers):
  """CACHE/NAME/SPLIT with links to the shards of its parts; {role: [link paths]}."""
  split_dir = os.path.join(root, split)
  files = {role: [s for part in parts for s in markers[part]['shards']]
           for role, parts in roles.items()}
  shared = [name for name in (fmt.LABEL_MAP, 'vocab.txt')
            if os.path.exists(os.path.join(root, PARTS, name))]
  content = {'files': files, 'shared': shared}
  links = {role: [os.path.join(split_dir, fmt.shard_name(role, i, len(shards)))
                  for i in range(len(shards))] for role, shards in files.items()}
  if _read_json(os.path.join(split_dir, DONE)) != content:
    os.makedirs(split_dir, exist_ok=True)
    for name in os.listdir(split_dir):
      os.remove(os.path.join(split_dir, name))
    for role, shards in files.items():
      for link, shard in zip(links[role], shards):
        os.symlink(os.path.join('..', PARTS, shard), link)
    for name in shared:
      os.symlink(os.path.join('..', PARTS, name), os.path.join(split_dir, name))
    _write_json(os.path.join(split_dir, DONE), content)  # Last: the directory is complete.
  return links


def _side(role, links, parts, markers, split, name):
  written = sum(markers[p]['written'] for p in parts)
  skipped = tuple(tuple(s) for p in parts for s in markers[p]['skipped'])
  if not written:
    reasons = '; '.join(f'{n}: {r}' for n, r in skipped[:3])
    raise ValueError(f'{name} split {split}: none of the {len(skipped)} {role} clips could be '
                     f'read ({reasons}{", ..." if len(skipped) > 3 else ""})')
  split_dir = os.path.dirname(links[0])
  return bm.Shards(split=role, pattern=os.path.join(split_dir, f'{role}-*-of-*'),
                   files=tuple(links), num_clips=written, skipped=skipped)


def prepare_layout(benchmark, layout, data_dir, root, splits, options, source='raw'):
  """Converts the parts of `layout` that `splits` (None: all) need into `root`, links each
  split's directory; {split: Prepared}."""
  splits = tuple(layout.splits) if splits is None else splits
  missing = [s for s in splits if s not in layout.splits]
  if missing:
    raise ValueError(f'{benchmark.name}: no split {missing[0]} in {data_dir!r} '
                     f'(found {sorted(layout.splits)}); expected {benchmark.layout}')
  needed = sorted({p for s in splits for parts in layout.splits[s].values() for p in parts})
  if not any(spec.path for p in needed for spec in layout.clips[p]):
    raise FileNotFoundError(f'{benchmark.name}: none of the videos the official lists name '
                            f'is under {data_dir!r}; expected {benchmark.layout}')
  parts_dir = os.path.join(root, PARTS)
  os.makedirs(parts_dir, exist_ok=True)
  if layout.class_names:
    write_text_if_changed(os.path.join(parts_dir, fmt.LABEL_MAP), layout.class_names)
  all_specs = [spec for specs in layout.clips.values() for spec in specs]
  if any(spec.captions for spec in all_specs):
    write_text_if_changed(os.path.join(parts_dir, 'vocab.txt'), text_files.vocabulary(all_specs))

  fps = options.fps or benchmark.fps
  audio = benchmark.modality == 'audio' if options.audio is None else options.audio
  settings = {'fps': fps, 'short_side': options.short_side, 'sample_rate': options.sample_rate,
              'jpeg_qscale': options.jpeg_qscale, 'audio': audio}
  markers = {}
  for part in needed:
    specs = layout.clips[part]
    key = digest({'clips': [_spec_record(s, data_dir) for s in specs],
                  'classes': list(layout.class_names), 'settings': settings})
    markers[part] = write_part(
        parts_dir, part, key,
        lambda specs=specs, part=part: _convert_part(specs, parts_dir, part, options, fps, audio))

  return {split: link_prepared(benchmark, root, split, layout.splits[split], markers,
                               layout.class_names, source, fps)
          for split in splits}


def link_prepared(benchmark, root, split, roles, markers, class_names, source, fps,
                  departures=()):
  """Links the directory of `split` (roles: {'train'|'test': [parts]}) to the shards of its
  parts (markers: {part: marker}); its `Prepared`."""
  links = _link_split(root, split, roles, markers)
  sides = {role: _side(role, links[role], parts, markers, split, benchmark.name)
           for role, parts in roles.items()}
  return bm.Prepared(benchmark=benchmark.name, split=split, data_dir=os.path.join(root, split),
                     train=sides.get('train'), test=sides['test'],
                     class_names=tuple(class_names), source=source, fps=fps,
                     departures=tuple(departures))
