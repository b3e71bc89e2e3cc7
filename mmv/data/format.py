"""Feature keys of the DMVR-compatible `tf.train.SequenceExample` format (DESIGN.md §5).

`image/encoded` and `WAVEFORM/feature/floats` are feature lists (one JPEG per frame, one
Feature holding the whole mono waveform); the rest are context features. DMVR stores no frame
rate or sample rate, so mmv adds `clip/fps` and `clip/audio/sample_rate` and readers fall back
to the defaults below when a record lacks them.
"""

IMAGE = 'image/encoded'
WAVEFORM = 'WAVEFORM/feature/floats'

LABEL_INDEX = 'clip/label/index'
LABEL_TEXT = 'clip/label/text'
CAPTION = 'caption/string'
FILENAME = 'video/filename'
START_US = 'clip/start/timestamp'
END_US = 'clip/end/timestamp'
FPS = 'clip/fps'
SAMPLE_RATE = 'clip/audio/sample_rate'

DEFAULT_FPS = 10.0
DEFAULT_SAMPLE_RATE = 48000.0


def shard_name(name: str, index: int, num_shards: int) -> str:
  """`NAME-00000-of-00016`, the DMVR shard naming."""
  return f'{name}-{index:05d}-of-{num_shards:05d}'
