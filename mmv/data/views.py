"""Extra views of a training example's record (`data.views`), beside its main clip.

Methods other than MMV compare several clips of one video: GDT a clip shifted in time, BraVe a
narrow view inside a broad one. `data.views` lists them, each a tuple

  (name, num_frames, frame_stride, crop_size, placement, with_audio)

e.g. `(('narrow', 16, 2, 224, 'within', False),)`; an override writes it the same way:
`--config.data.views="(('shifted', 32, 1, 200, 'independent', True),)"`.

Placement, of the view's first frame (in stored frames; indices past the end wrap as the main
clip's do):
  'independent': drawn uniformly among the view's own offsets, independently of the main clip.
  'within': the view's time span [start, start + num_frames·frame_stride) lies inside the main
    clip's [offset, offset + data.num_frames·data.frame_stride); its start is drawn uniformly
    among such placements. The view cannot last longer than the main clip.
  'same': the main clip's offset.

View `v` adds `video_<v>` float32 [num_frames, crop_size, crop_size, 3] (its own crop box, flip
and colour draws, with the main clip's `scale_jitter`, `min_resize`, `random_flip`,
`color_augment` and `normalization`) and, with `with_audio`, `audio_<v>`: the audio of the
view's own time span (num_frames·frame_stride / data.fps seconds), in `data.audio_format`.
Views need 'video' among `data.modalities` ('audio' too for `with_audio`); they have no text.
Only training reads them: evaluation (and an augmented evaluation pass) reads the main clip.
"""

import collections
import re

PLACEMENTS = ('independent', 'within', 'same')
FIELDS = ('name', 'num_frames', 'frame_stride', 'crop_size', 'placement', 'with_audio')
# Lower-case letters and digits: with '_' a view's keys could be another's (or the main clip's).
_NAME = re.compile(r'[a-z][a-z0-9]*')
# Names whose keys are the main clip's (`audio_mask`) or its host-side draws (`frames_box`...).
_RESERVED = ('mask', 'box', 'flip', 'colour')

View = collections.namedtuple('View', FIELDS)


def _describe(entry):
  return f'data.views entry {entry!r}'


def _check_view(entry, c):
  """`entry` of `data.views` → View, or ValueError saying what is wrong with it."""
  if not isinstance(entry, (tuple, list)) or len(entry) != len(FIELDS):
    raise ValueError(f'{_describe(entry)}: each view is a tuple ({", ".join(FIELDS)}), e.g. '
                     "('narrow', 16, 2, 224, 'within', False)")
  view = View(*entry)
  if not isinstance(view.name, str) or not _NAME.fullmatch(view.name) or (
      view.name in _RESERVED):
    raise ValueError(f'{_describe(entry)}: name must be lower-case letters and digits, starting '
                     f'with a letter, and not one of {_RESERVED}; got {view.name!r}')
  for field in ('num_frames', 'frame_stride', 'crop_size'):
    value = getattr(view, field)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f'{_describe(entry)}: {field} must be an integer of at least 1, got '
                       f'{value!r}')
  if view.placement not in PLACEMENTS:
    raise ValueError(f'{_describe(entry)}: placement must be one of {PLACEMENTS}, got '
                     f'{view.placement!r}')
  if not isinstance(view.with_audio, bool):
    raise ValueError(f'{_describe(entry)}: with_audio must be True or False, got '
                     f'{view.with_audio!r}')
  if 'video' not in c.modalities:
    raise ValueError(f'{_describe(entry)}: views are clips of the video; data.modalities '
                     f'{tuple(c.modalities)} has none')
  if view.with_audio and 'audio' not in c.modalities:
    raise ValueError(f'{_describe(entry)}: with_audio needs audio among data.modalities '
                     f'{tuple(c.modalities)}')
  if view.placement == 'within' and frames_spanned(view) > c.num_frames * c.frame_stride:
    raise ValueError(
        f'{_describe(entry)}: a view placed within the main clip cannot last longer than it: '
        f'{view.num_frames} x {view.frame_stride} frames > data.num_frames x '
        f'data.frame_stride = {c.num_frames} x {c.frame_stride}')
  return view


def parse(c):
  """The views of data config `c` (`data.views`; none in a config written before it), checked."""
  views = tuple(_check_view(entry, c) for entry in c.get('views', ()))
  names = [v.name for v in views]
  if len(set(names)) != len(names):
    raise ValueError(f'data.views names must differ, got {names}')
  return views


def frames_spanned(view):
  """Stored frames of the view's time span: num_frames · frame_stride."""
  return view.num_frames * view.frame_stride


def video_key(view):
  return f'video_{view.name}'


def audio_key(view):
  return f'audio_{view.name}'


def frames_key(view):
  """The host batch's uint8 crops of the view; its draws are `frames_key(view) + '_box'` (and
  '_flip', '_colour'), as 'frames' and 'frames_box' are the main clip's."""
  return f'frames_{view.name}'
