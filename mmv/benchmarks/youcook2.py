"""YouCook2 (Zhou et al. 2018), validation set: 3,492 annotated cooking steps of 457 videos,
each a clip with its sentence, for zero-shot text-to-video retrieval.

Layout:

    DIR/raw_videos/validation/<recipe>/<video_id>.<ext>   (any directory under DIR will do)
    DIR/youcookii_annotations_trainval.json               (anywhere under DIR)
        {"database": {video_id: {"subset": "validation", "annotations":
                                 [{"segment": [start_s, end_s], "sentence": ...}, ...]}}}

Each segment of a validation video is a clip from its start to its end time, its sentence the
caption; videos in id order, segments in the file's order; one part (`validation`), converted
once. Segments of a video that is not on disk are counted as skipped.
"""

import functools
import json

from mmv.benchmarks import benchmark as bm
from mmv.benchmarks import media_index
from mmv.benchmarks import protocols
from mmv.benchmarks import sources

SPLIT = 'validation'
ANNOTATIONS = 'youcookii_annotations_trainval.json'
LAYOUT = f'DIR/raw_videos/validation/<recipe>/<video_id>.* and DIR/{ANNOTATIONS}'


def read_layout(data_dir):
  path = media_index.require_file(data_dir, ANNOTATIONS, 'the YouCook2 annotations')
  with open(path) as f:
    database = json.load(f).get('database')
  if not isinstance(database, dict):
    raise ValueError(f'{path}: expected {{"database": {{video_id: ...}}}}')
  videos = media_index.media_by_stem(data_dir)
  clips = []
  for video_id in sorted(database):
    entry = database[video_id]
    if entry.get('subset') != SPLIT:
      continue
    for segment in entry['annotations']:
      start, end = segment['segment']
      clips.append(bm.clip(video_id, videos.get(video_id, [None])[0], start=start, end=end,
                           captions=[segment['sentence'].strip()]))
  if not clips:
    raise ValueError(f'{path}: no annotated video of subset {SPLIT!r}')
  return bm.Layout(clips={SPLIT: clips}, splits={SPLIT: {'test': [SPLIT]}})


BENCHMARK = bm.Benchmark(
    name='youcook2', kind='retrieval', modality='video', splits=(SPLIT,),
    fps=protocols.DEFAULTS['youcook2']['fps'],
    layout=LAYOUT, prepare_fn=functools.partial(sources.prepare, read_layout=read_layout))
