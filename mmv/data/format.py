"""Feature keys of the DMVR-compatible `tf.train.SequenceExample` format: DMVR's keys, plus our
frame-rate and sample-rate context features.

`image/encoded` and `WAVEFORM/feature/floats` (or mmv's `WAVEFORM/feature/int16le`) are feature lists (one JPEG per frame, one
Feature holding the whole mono waveform); the rest are context features. DMVR stores no frame
rate or sample rate, so mmv adds `clip/fps` and `clip/audio/sample_rate` and readers fall back
to the defaults below when a record lacks them. mmv also adds caption timestamps (so a reader
can pick the captions nearest the frames it sampled) and flags for a missing video or audio
track; records without them read as DMVR's do.
"""

IMAGE = 'image/encoded'
WAVEFORM = 'WAVEFORM/feature/floats'
# mmv's compact alternative (`mmv.ingest.convert --audio_format int16`): one Feature of one bytes
# value, the waveform as little-endian signed 16-bit PCM; sample = value / 32768. Half the bytes
# of DMVR's float list; DMVR's readers do not know it. A record holds one of the two.
WAVEFORM_INT16 = 'WAVEFORM/feature/int16le'
AUDIO_FORMATS = ('float', 'int16')
INT16_SCALE = 32768.0

LABEL_INDEX = 'clip/label/index'
LABEL_TEXT = 'clip/label/text'
CAPTION = 'caption/string'
CAPTION_START_US = 'caption/start/timestamp'  # One per caption, in the source video's time.
CAPTION_END_US = 'caption/end/timestamp'
FILENAME = 'video/filename'
START_US = 'clip/start/timestamp'
END_US = 'clip/end/timestamp'
FPS = 'clip/fps'
SAMPLE_RATE = 'clip/audio/sample_rate'
HAS_VIDEO = 'clip/has_video'  # 0 for audio-only inputs (no `image/encoded`).
HAS_AUDIO = 'clip/has_audio'  # 0 for videos without an audio track (no waveform).

DEFAULT_FPS = 10.0
DEFAULT_SAMPLE_RATE = 48000.0

# Written next to the shards: line i is the name of class i, the same file for every split.
LABEL_MAP = 'labels.txt'
# Words of captions and vocabulary files: lower-cased text split at every run of other
# characters (the tokenizer's rule, which the converter's vocabularies follow).
NON_WORD = '[^a-z0-9]+'


# The three feature types of a record. TensorFlow is imported on first use, so that modules
# which only need the keys above (the converter's worker processes) do not load it.
def bytes_feature(values):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def ints_feature(values):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def floats_feature(values):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def shard_name(name: str, index: int, num_shards: int) -> str:
  """`NAME-00000-of-00016`, the DMVR shard naming."""
  return f'{name}-{index:05d}-of-{num_shards:05d}'
