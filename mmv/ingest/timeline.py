"""Where a media file's time 0 is, and how long the file lasts from there.

Clip times (a CSV's, narration captions', `mmv.embed`'s) are seconds from a file's start, not
its timestamps: an MPEG-TS or HLS segment, or a file cut with `ffmpeg -copyts`, whose
timestamps start at 10 s has its first frame at 0 s. The start is where the video stream starts
(its first frame), for a file without video where its first audio stream starts. A video's
sound is read on the video's clock, so picture and sound stay as the file aligns them: sound
before the first frame (the AAC encoder's priming, which MPEG-TS keeps and MP4 trims) is in no
clip, and a file's times match those of the same content in another container.
"""

import dataclasses
from typing import Optional

import av


@dataclasses.dataclass(frozen=True)
class Timeline:
  """`origin`: time 0 in the file's timestamps (seconds); `length`: seconds from there to the
  file's end, to the microsecond, as its header says (None when it does not)."""
  origin: float
  length: Optional[float]


def of_container(container, video):
  """The `Timeline` of an open file whose video stream is `video` (None: it has none).

  FFmpeg measures a file's duration from its start (the earliest stream's), except a Matroska
  file's, whose Duration header it gives as it is: FFmpeg's muxer writes there the last
  timestamp (a file cut at 10 s with -copyts and lasting 1.6 s says 11.6 s), where such a file
  ends.
  """
  stream = video or next(iter(container.streams.audio), None)
  if stream is not None and stream.start_time is not None:
    origin = float(stream.start_time * stream.time_base)
  else:
    origin = (container.start_time or 0) / av.time_base
  if container.duration is None:
    return Timeline(origin, None)
  end = container.duration / av.time_base
  if not container.format.name.startswith('matroska'):
    end += (container.start_time or 0) / av.time_base
  return Timeline(origin, round(end - origin, 6))  # Durations are in microseconds.
