"""MSR-VTT (Xu et al. 2016), the 1k-A test set (Yu et al. 2018, "JSFusion"): 1,000 test videos,
each with one sentence, for zero-shot text-to-video retrieval.

Layout:

    DIR/videos/all/video<N>.mp4        (any directory under DIR will do)
    DIR/MSRVTT_JSFUSION_test.csv       key,vid_key,video_id,sentence  (anywhere under DIR)

Each row is a clip: the whole video `video_id` with `sentence` as its caption, in the csv's
order; one part (`test`), converted once. A video that is not on disk is counted as skipped.
"""

import csv
import functools

from mmv.benchmarks import benchmark as bm
from mmv.benchmarks import media_index
from mmv.benchmarks import protocols
from mmv.benchmarks import sources

SPLIT = '1k-A'
TEST_LIST = 'MSRVTT_JSFUSION_test.csv'
LAYOUT = f'DIR/videos/all/video*.mp4 and DIR/{TEST_LIST}'


def read_layout(data_dir):
  path = media_index.require_file(data_dir, TEST_LIST, 'the 1k-A test list')
  with open(path, newline='') as f:
    reader = csv.DictReader(f)
    if not {'video_id', 'sentence'} <= set(reader.fieldnames or ()):
      raise ValueError(f'{path}: expected columns key,vid_key,video_id,sentence, got '
                       f'{reader.fieldnames}')
    rows = list(reader)
  videos = media_index.media_by_stem(data_dir)
  clips = [bm.clip(row['video_id'], videos.get(row['video_id'], [None])[0],
                   captions=[row['sentence'].strip()]) for row in rows]
  return bm.Layout(clips={'test': clips}, splits={SPLIT: {'test': ['test']}})


BENCHMARK = bm.Benchmark(
    name='msrvtt', kind='retrieval', modality='video', splits=(SPLIT,),
    fps=protocols.DEFAULTS['msrvtt']['fps'],
    layout=LAYOUT, prepare_fn=functools.partial(sources.prepare, read_layout=read_layout))
