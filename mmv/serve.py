r"""A web page to search an index (`python -m mmv.embed`) for moments, by sentence, sound or clip.

    python -m mmv.serve --index runs/demo/index [--port 8080] [--host 127.0.0.1]

Then open http://127.0.0.1:8080/: type a sentence, or upload a sound (sound-alike moments) or a
clip (look-alike moments); the moments come as a grid of their first frames with score, file
and times, each playable from its start (an HTML5 video of the indexed file with a
`#t=start,end` fragment). It binds to 127.0.0.1 (this machine only) unless --host says
otherwise: it serves the indexed files to whoever can reach it.

Routes: GET / (the page; ?q=SENTENCE searches), POST / (an upload, multipart field `file`),
GET /api/search?q=... and POST /api/search (the results as JSON, as `mmv.search --json`),
GET /media?file=PATH (an indexed file, with HTTP ranges for seeking), GET /thumb?file=PATH&t=S
(a JPEG of the frame at S seconds). Only the files recorded as the index's inputs are served:
any other path (`../`, another absolute path, a symlink made or changed since, pointing out)
is refused with 403. Uploads above --max_upload_mb are refused with 413, files that are not
sound or video with 415. Search uses the index's ANN index where `mmv.embed --ann` built one
that covers it (`mmv.index_ann`), exact search otherwise.
"""

import functools
import os
import tempfile
import threading
import types

from absl import app
from absl import flags
from absl import logging
import av
from starlette import applications
from starlette import concurrency
from starlette import exceptions
from starlette import responses
from starlette import routing
import uvicorn

from mmv import checkpoint as ckpt_lib
from mmv import index_ann
from mmv import media_inputs
from mmv import moments
from mmv import serve_page
from mmv import window_embed
from mmv.ingest import media
from mmv.ingest import timeline

MAX_TOP_K = 100
THUMB_SHORT_SIDE = 180


class Collection:
  """What the app serves: an opened `moments.Index`, its ANN indexes and the files it may
  serve (the recorded inputs, each by the real path it had when the server started)."""

  def __init__(self, index, anns=None, notes=()):
    self.index, self.anns, self.notes = index, anns or {}, list(notes)
    self.scorer = index_ann.scorer(index, self.anns)
    self.real = {e['file']: os.path.realpath(e['file']) for e in index.files if e.get('file')}
    self.kinds = {e['file']: e.get('kinds', ['video']) for e in index.files}
    self.lock = threading.Lock()  # One query at a time through the model.

  def checked_path(self, file):
    """The real path of `file`, a recorded input still where it was; 403 otherwise."""
    if not file or file not in self.real:
      raise exceptions.HTTPException(403, f'not a file of this index: {file!r}')
    real = os.path.realpath(file)
    if real != self.real[file]:
      raise exceptions.HTTPException(403, f'{file!r} now leads elsewhere than when the server '
                                     'started (a symlink changed): not served')
    if not os.path.isfile(real):
      raise exceptions.HTTPException(404, f'{file!r} is no longer there')
    return real

  def search(self, **query):
    with self.lock:
      return moments.search(self.index, scorer=self.scorer, **query)


def thumbnail(path, seconds, short_side=THUMB_SHORT_SIDE):
  """JPEG bytes of the frame of video `path` shown at `seconds` from its first frame (None: no
  picture there), decoded with PyAV after a seek."""
  with av.open(path) as container:
    stream = next((s for s in container.streams.video
                   if not s.disposition & av.stream.Disposition.attached_pic), None)
    if stream is None:
      return None
    origin = timeline.of_container(container, stream).origin
    skips = types.SimpleNamespace(count=0, first=None)
    jpegs = media.read_frames(container, stream, seconds, seconds + 1e-3, origin=origin,
                              fps=1000, short_side=short_side, qscale=4, skips=skips)
  return jpegs[0] if jpegs else None


def _int(value, default, low, high, name):
  try:
    out = default if value in (None, '') else int(value)
  except ValueError:
    raise exceptions.HTTPException(400, f'{name} must be an integer, got {value!r}') from None
  if not low <= out <= high:
    raise exceptions.HTTPException(400, f'{name} must be in [{low}, {high}], got {out}')
  return out


def _float(value, name, low=-1.0, high=1.0):
  if value in (None, ''):
    return None
  try:
    out = float(value)
  except ValueError:
    raise exceptions.HTTPException(400, f'{name} must be a number, got {value!r}') from None
  if not low <= out <= high:
    raise exceptions.HTTPException(400, f'{name} must be in [{low}, {high}], got {out}')
  return out


async def _upload(request, max_bytes):
  """(path of a temporary copy, probe, form) of the uploaded `file`: 413 above `max_bytes`
  (told by Content-Length before anything is read), 400 without a file, 415 if not sound or
  video."""
  length = request.headers.get('content-length')
  if length is None:
    raise exceptions.HTTPException(411, 'an upload needs a Content-Length')
  if not length.isdigit() or int(length) > max_bytes:
    raise exceptions.HTTPException(413, f'upload of {length} bytes refused: at most '
                                   f'{max_bytes} bytes ({max_bytes / 2**20:g} MB)')
  async with request.form(max_files=1, max_fields=8) as form:
    upload = form.get('file')
    if upload is None or isinstance(upload, str) or not upload.filename:
      raise exceptions.HTTPException(400, 'no file uploaded (multipart field "file")')
    suffix = os.path.splitext(upload.filename)[1][:16]
    fd, path = tempfile.mkstemp(prefix='mmv-upload-', suffix=suffix)
    with os.fdopen(fd, 'wb') as out:
      while chunk := await upload.read(1 << 20):
        out.write(chunk)
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
  try:
    found = await concurrency.run_in_threadpool(window_embed.probe, path)
  except media_inputs.UnreadableInput as e:
    os.remove(path)
    raise exceptions.HTTPException(415, f'{upload.filename} is not a sound or video file '
                                   f'this server can read ({e})') from None
  return path, found, fields, upload.filename


def create_app(collection, *, max_upload_mb=50.0, top_k=12):
  """The Starlette app serving `collection` (a `Collection`)."""
  max_bytes = int(max_upload_mb * 2 ** 20)
  index = collection.index
  name = os.path.basename(os.path.normpath(index.index_dir))

  def render(status=200, **kwargs):
    text = serve_page.page(
        index_name=name, files=len(index.files), windows=len(index.window_file),
        notes=collection.notes, max_upload_mb=max_upload_mb, top_k=top_k,
        has_picture=lambda f: 'video' in collection.kinds.get(f, ()), **kwargs)
    return responses.HTMLResponse(text, status_code=status)

  async def run_query(request, form=None):
    """(heading, query text, results) of the request's sentence (q) or upload."""
    params = request.query_params
    k = _int(params.get('top_k'), top_k, 1, MAX_TOP_K, 'top_k')
    dedupe = _float(params.get('dedupe'), 'dedupe')
    if request.method == 'GET':
      text = (params.get('q') or '').strip()
      if not text:
        return None, '', None
      found = await concurrency.run_in_threadpool(collection.search, text=text, top_k=k,
                                                  dedupe=dedupe)
      return f'Moments for “{text}”', text, found
    path, probe, fields, filename = await _upload(request, max_bytes)
    against = fields.get('against', 'sound')
    if against not in moments.AGAINST:
      raise exceptions.HTTPException(400, f'against must be one of {moments.AGAINST}')
    try:
      query = ({'video_file': path} if probe.has_video else
               {'audio_file': path, 'audio_against': against})
      found = await concurrency.run_in_threadpool(collection.search, top_k=k, dedupe=dedupe,
                                                  **query)
    except (media_inputs.UnreadableInput, ValueError) as e:
      raise exceptions.HTTPException(415, f'{filename}: {e}') from None
    finally:
      os.remove(path)
    kind = 'look' if probe.has_video else ('sound' if against == 'sound' else 'picture')
    return f'Moments whose {kind} is like {filename}', '', found

  async def home(request):
    heading, text, found = await run_query(request)
    return render(query=text, results=found, heading=heading)

  async def api_search(request):
    _, _, found = await run_query(request)
    if found is None:
      raise exceptions.HTTPException(400, 'give a sentence (?q=...) or upload a file')
    return responses.JSONResponse(found)

  async def media_file(request):
    path = collection.checked_path(request.query_params.get('file'))
    return responses.FileResponse(path)

  async def thumb(request):
    file = request.query_params.get('file')
    path = collection.checked_path(file)
    seconds = _float(request.query_params.get('t'), 't', 0.0, 1e7) or 0.0
    jpeg = await concurrency.run_in_threadpool(_cached_thumbnail, path, os.path.getmtime(path),
                                               seconds)
    if jpeg is None:
      raise exceptions.HTTPException(404, f'no picture at {seconds} s of {file!r}')
    return responses.Response(jpeg, media_type='image/jpeg',
                              headers={'Cache-Control': 'max-age=3600'})

  async def error(request, exc):
    if request.url.path.startswith('/api/') or request.url.path in ('/media', '/thumb'):
      return responses.JSONResponse({'error': exc.detail}, status_code=exc.status_code)
    return render(status=exc.status_code, error=f'{exc.status_code}: {exc.detail}',
                  query=request.query_params.get('q', ''))

  return applications.Starlette(
      routes=[routing.Route('/', home, methods=['GET', 'POST']),
              routing.Route('/api/search', api_search, methods=['GET', 'POST']),
              routing.Route('/media', media_file), routing.Route('/thumb', thumb)],
      exception_handlers={exceptions.HTTPException: error})


@functools.lru_cache(maxsize=512)
def _cached_thumbnail(path, mtime, seconds):
  del mtime  # Part of the key: a file rewritten gets new thumbnails.
  try:
    return thumbnail(path, seconds)
  except (av.error.FFmpegError, OSError) as e:
    logging.warning('no thumbnail of %s at %s s: %s', path, seconds, e)
    return None


def define_flags():
  """The command line (defined only when run, so importing this module defines no flags)."""
  flags.DEFINE_string('index', None, 'The index directory made by python -m mmv.embed.')
  flags.DEFINE_integer('port', 8080, 'The port to listen on.')
  flags.DEFINE_string('host', '127.0.0.1', 'The address to bind: 127.0.0.1 serves this '
                      'machine only; 0.0.0.0 serves the indexed files to the network.')
  flags.DEFINE_string('workdir', None, 'The model\'s workdir if it moved since the index was '
                      'made (default: the one the index records).')
  flags.DEFINE_float('max_upload_mb', 50.0, 'Largest upload accepted (MB); larger: 413.')
  flags.DEFINE_integer('top_k', 12, 'Moments shown per query.')
  flags.DEFINE_bool('exact', False, 'Exact search even where an ANN index exists.')
  flags.mark_flags_as_required(['index'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  ckpt_lib.start_reader()
  f = flags.FLAGS
  try:
    index = moments.open_index(f.index, workdir=f.workdir)
    if not index.files:
      raise ValueError(f'{f.index} holds no embedded file yet')
  except (FileNotFoundError, ValueError) as e:
    raise SystemExit(f'error: {e}') from None
  anns, notes = index_ann.load(index) if not f.exact else ({}, [])
  for note in notes:
    print(f'note: {note}')
  application = create_app(Collection(index, anns, notes), max_upload_mb=f.max_upload_mb,
                           top_k=f.top_k)
  print(f'serving {f.index} ({len(index.files)} files, {len(index.window_file)} windows'
        f'{", ANN: " + ", ".join(anns) if anns else ""}) on http://{f.host}:{f.port}/',
        flush=True)
  uvicorn.run(application, host=f.host, port=f.port, log_level='warning')


if __name__ == '__main__':
  define_flags()
  app.run(main)
