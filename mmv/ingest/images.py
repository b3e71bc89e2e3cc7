"""Still images as 1-frame records: the one image preprocessing of evaluation and inference.

An image (a JPEG, PNG, ... file, or a uint8 array [H, W, 3]) is decoded with Pillow (palette,
grayscale, CMYK and alpha images converted to RGB), resized so its short side is `short_side`
(Pillow's bicubic filter with antialiasing; 0 keeps its size) and stored as ONE JPEG frame of
the converter's record format (`media.Clip` → `clip_records.make_example`). The evaluation
pipeline reads such records with `num_frames` 1, then resizes the short side to the protocol's
`min_resize` and takes the central (or, in augmented training passes, a random) `crop_size`
crop, exactly as it reads video frames; `mmv.inference` goes file → record → pipeline the same
way. Runs in the converter's spawned worker processes: imports neither TensorFlow nor JAX.
"""

import io

import numpy as np
from PIL import Image

from mmv.ingest import media

# Every image record holds one frame lasting one second: its "frame rate" is 1.
FPS = 1.0
JPEG_QUALITY = 95


class ImageError(ValueError):
  """A file or array that is not a readable image."""


def _rgb(image):
  if image.mode == 'RGB':
    return image
  if image.mode in ('RGBA', 'LA', 'PA') or (image.mode == 'P' and
                                             'transparency' in image.info):
    # Transparent pixels on white, as a browser shows them; not their hidden colour.
    rgba = image.convert('RGBA')
    background = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert('RGB')
  return image.convert('RGB')  # L, P, CMYK, YCbCr, I;16 ...


def decode(source):
  """RGB `PIL.Image` of a path, encoded bytes or a uint8 array [H, W, 3]; ImageError else."""
  if isinstance(source, np.ndarray):
    if source.dtype != np.uint8 or source.ndim != 3 or source.shape[-1] != 3 or not all(
        source.shape[:2]):
      raise ImageError(f'an image array must be uint8 [H, W, 3], got {source.dtype} '
                       f'{list(source.shape)}')
    return Image.fromarray(source, 'RGB')
  try:
    image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    image.load()  # Decodes now: a truncated or corrupt file fails here, not later.
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise ImageError(f'not a readable image: {type(e).__name__}: {e}') from e
  return _rgb(image)


def resize_short_side(image, short_side):
  """`image` resized (bicubic, antialiased) so its short side is `short_side`; 0: unchanged.
  Sides are rounded to even numbers (the JPEG's 4:2:0 chroma), as the video converter's."""
  if not short_side:
    return image
  width, height = image.size
  scale = short_side / min(width, height)
  even = lambda x: max(2, int(round(x * scale / 2)) * 2)
  size = (even(width), even(height))
  return image if size == image.size else image.resize(size, Image.Resampling.BICUBIC)


def encode_jpeg(image, quality=JPEG_QUALITY):
  out = io.BytesIO()
  image.save(out, format='JPEG', quality=quality)
  return out.getvalue()


def read_image(source, *, short_side=256, quality=JPEG_QUALITY):
  """The `media.Clip` of one image: one JPEG frame (see the module doc), no waveform."""
  image = resize_short_side(decode(source), short_side)
  return media.Clip(jpegs=[encode_jpeg(image, quality)], waveform=None, start=0.0,
                    end=1.0 / FPS)


def read_image_or_reason(spec, *, short_side=256, quality=JPEG_QUALITY):
  """`read_image` of `spec.path`, or the reason it cannot be read: the converter pool's worker
  function (one bad file never stops a conversion)."""
  if spec.path is None:
    return 'no such file'
  try:
    return read_image(spec.path, short_side=short_side, quality=quality)
  except Exception as e:  # pylint: disable=broad-except
    return f'{type(e).__name__}: {e}'
