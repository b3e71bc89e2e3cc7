r"""HowTo100M's caption.json → the narration JSON of the videos on disk, and what is missing.

    python data/howto100m/recipe.py --captions /data/howto100m/caption.json \
        --video_list /data/howto100m/HowTo100M_v1.csv --video_root /data/howto100m/videos \
        --output /data/howto100m/narration.json --missing_out /data/howto100m/missing.txt
    python -m mmv.ingest.convert --narration_json /data/howto100m/narration.json \
        --video_root /data/howto100m/videos --output_dir /data/howto100m/shards --name train \
        --num_shards 1024

Inputs, as the authors publish them (www.di.ens.fr/willow/research/howto100m/):
  caption.json       {video_id: {"start": [s, ...], "end": [s, ...], "text": [...]}}, the
                     YouTube ASR narration of each video
  HowTo100M_v1.csv   `video_id,category_1,category_2,rank,task_id`, one row per video
                     (optional: with it, only the videos it lists are kept, so a subset of its
                     rows selects a subset)
  videos             --video_root/<video_id>.<ext>, the name the converter looks up

Writes --output: caption.json's entries for the videos that are on disk, in the same format,
which `python -m mmv.ingest.convert --narration_json` reads. The converter reads the file that
sorts first among VIDEO_ROOT/<video_id>.*, so a video whose first such file is not a media file
(e.g. a downloader's `<id>.description` beside `<id>.mp4`) is skipped here and counted. Videos
not on disk are counted (and listed in --missing_out), captions whose text is empty or whose
times are not a span are dropped and counted; a video left without captions is skipped. An entry
that is not three lists of one length is an error naming the video. An existing --output or
--missing_out is replaced only with --overwrite.
"""

import argparse
import collections
import csv
import json
import os
import sys

from mmv.benchmarks import media_index
from mmv.ingest import media

PUBLISHED_VIDEOS = '1.22M'  # Miech et al. 2019: 1.22M narrated instructional videos.


class RecipeError(ValueError):
  """Bad input, said in one line."""


def read_captions(path):
  """caption.json, its shape checked: {video_id: {"start": [...], "end": [...], "text":
  [...]}}, lists of one length."""
  with open(path) as f:
    try:
      captions = json.load(f)
    except json.JSONDecodeError as e:
      raise RecipeError(f'{path}: not JSON ({e})') from None
  if not isinstance(captions, dict):
    raise RecipeError(f'{path}: expected {{video_id: {{"start": [...], "end": [...], '
                      '"text": [...]}}}}')
  for video_id, entry in captions.items():
    lists = [entry.get(k) if isinstance(entry, dict) else None for k in ('start', 'end', 'text')]
    if not all(isinstance(l, list) for l in lists) or len({len(l) for l in lists}) != 1:
      raise RecipeError(f'{path}: {video_id} is not {{"start": [...], "end": [...], "text": '
                        '[...]}} with lists of one length')
  return captions


def read_video_list(path):
  """The video ids of HowTo100M_v1.csv (or any CSV with a video_id column)."""
  with open(path, newline='') as f:
    reader = csv.DictReader(f)
    if 'video_id' not in (reader.fieldnames or ()):
      raise RecipeError(f'{path}: no video_id column (expected video_id,category_1,'
                        'category_2,rank,task_id)')
    return {row['video_id'] for row in reader}


def converter_files(video_root):
  """{video_id: the file the converter reads for it}: the first, sorted, of
  VIDEO_ROOT/<video_id>.* (YouTube ids hold no '.')."""
  files = {}
  for name in sorted(os.listdir(video_root)):
    if os.path.isfile(os.path.join(video_root, name)) and '.' in name:
      files.setdefault(name.split('.', 1)[0], name)
  return files


def _caption_error(start, end, text):
  if not isinstance(text, str) or not text.strip():
    return 'empty text'
  if not all(isinstance(t, (int, float)) for t in (start, end)):
    return 'times not numbers'
  return 'times not a span' if media.time_error(float(start), float(end)) else None


def select(captions, files, listed=None):
  """(narration JSON of the videos to convert, report counts {what: [video ids]},
  {reason: captions dropped})."""
  narration, videos, dropped = {}, collections.defaultdict(list), collections.Counter()
  if listed is not None:
    videos['captions of videos the list lacks'] = sorted(set(captions) - listed)
    videos['listed videos without captions'] = sorted(listed - set(captions))
  for video_id in sorted(captions):
    if listed is not None and video_id not in listed:
      continue
    name = files.get(video_id)
    if name is None:
      videos['not on disk'].append(video_id)
      continue
    if os.path.splitext(name)[1].lower() not in media_index.MEDIA_EXTENSIONS:
      videos['first file not a media file'].append(name)
      continue
    kept = []
    entry = captions[video_id]
    for start, end, text in zip(entry['start'], entry['end'], entry['text']):
      reason = _caption_error(start, end, text)
      if reason:
        dropped[reason] += 1
      else:
        kept.append((start, end, text))
    if not kept:
      videos['no usable caption'].append(video_id)
      continue
    narration[video_id] = {'start': [s for s, _, _ in kept], 'end': [e for _, e, _ in kept],
                           'text': [t for _, _, t in kept]}
  return narration, dict(videos), dict(dropped)


def _write(path, text):
  with open(path + '.tmp', 'w') as f:
    f.write(text)
  os.replace(path + '.tmp', path)


def run(captions_path, video_root, output, video_list=None, missing_out=None, overwrite=False):
  """The recipe; returns the report's lines."""
  if not os.path.isdir(video_root):
    raise RecipeError(f'--video_root {video_root!r} is not a directory')
  existing = [p for p in (output, missing_out) if p and os.path.exists(p)]
  if existing and not overwrite:
    raise RecipeError(f'{existing[0]} exists; pass --overwrite to replace it')
  captions = read_captions(captions_path)
  listed = read_video_list(video_list) if video_list else None
  narration, videos, dropped = select(captions, converter_files(video_root), listed)
  if not narration:
    raise RecipeError(f'none of the {len(captions)} videos of {captions_path} is usable under '
                      f'{video_root!r} ({", ".join(f"{k}: {len(v)}" for k, v in videos.items())})'
                      '; nothing written')
  _write(output, json.dumps(narration))
  num_captions = sum(len(e['text']) for e in narration.values())
  lines = [f'{len(captions)} videos in {captions_path} (published: {PUBLISHED_VIDEOS}); '
           f'{len(narration)} with {num_captions} captions written to {output}']
  for what, ids in videos.items():
    if ids:
      more = ', ...' if len(ids) > 5 else ''
      lines.append(f'{what}: {len(ids)} ({", ".join(ids[:5])}{more})')
  for reason, count in sorted(dropped.items()):
    lines.append(f'captions dropped, {reason}: {count}')
  if missing_out:
    _write(missing_out, ''.join(f'{v}\n' for v in videos.get('not on disk', ())))
    lines.append(f'videos not on disk listed in {missing_out}')
  lines.append(f'next: python -m mmv.ingest.convert --narration_json {output} --video_root '
               f'{video_root} --output_dir SHARDS --name train --num_shards N')
  return lines


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--captions', required=True, help="The authors' caption.json.")
  parser.add_argument('--video_root', required=True, help='Where <video_id>.<ext> are.')
  parser.add_argument('--output', required=True, help='The narration JSON to write.')
  parser.add_argument('--video_list', help='HowTo100M_v1.csv (or a subset): videos to keep.')
  parser.add_argument('--missing_out', help='Write the ids of videos not on disk here.')
  parser.add_argument('--overwrite', action='store_true', help='Replace existing outputs.')
  args = parser.parse_args(argv)
  try:
    lines = run(args.captions, args.video_root, args.output, args.video_list,
                args.missing_out, args.overwrite)
  except (RecipeError, OSError) as e:
    sys.exit(f'howto100m recipe: {e}')
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
