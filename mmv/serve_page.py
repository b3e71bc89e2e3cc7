"""The HTML of `mmv.serve`'s page: a query box, an upload form and a grid of moments."""

import html
import urllib.parse

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}
h1{font-size:1.3em;margin:0 0 .6em}
form{display:flex;gap:.5em;align-items:center;margin:.4em 0;flex-wrap:wrap}
input[type=search]{flex:1;min-width:18em;font-size:1.05em;padding:.4em}
button{font-size:1em;padding:.4em 1em}
.note{color:#666;font-size:.9em}
.error{color:#a00;font-weight:bold}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:1em;
      margin-top:1em}
.hit{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.5em;margin:0}
.hit video,.hit audio{width:100%;background:#000}
.hit figcaption{font-size:.85em;margin-top:.3em;word-break:break-all}
.score{font-weight:bold}
"""


def _media_url(file, start, end):
  return (f'/media?{urllib.parse.urlencode({"file": file})}'
          f'#t={start:.3f},{end:.3f}')


def _hit(hit, has_picture):
  e = html.escape
  file, start, end = hit['file'], float(hit['start']), float(hit['end'])
  if has_picture:
    thumb = f'/thumb?{urllib.parse.urlencode({"file": file, "t": f"{start:.3f}"})}'
    player = (f'<video controls preload="none" poster="{e(thumb)}" '
              f'src="{e(_media_url(file, start, end))}"></video>')
  else:
    player = f'<audio controls preload="none" src="{e(_media_url(file, start, end))}"></audio>'
  return (f'<figure class="hit" data-rank="{hit["rank"]}" data-file="{e(file)}" '
          f'data-start="{start:g}" data-end="{end:g}">{player}<figcaption>'
          f'<span class="rank">#{hit["rank"]}</span> '
          f'<span class="score">{hit["score"]:.3f}</span> '
          f'<span class="name">{e(hit["name"])}</span> '
          f'<span class="time">{start:.1f}–{end:.1f} s</span></figcaption></figure>')


def page(*, index_name, files, windows, query='', results=None, heading=None, error=None,
         notes=(), has_picture=lambda file: True, max_upload_mb=None, top_k=12):
  """The whole page: the forms, then `error` or the grid of `results` (moments.search's
  dicts) under `heading`."""
  e = html.escape
  parts = [
      '<!doctype html><html lang="en"><head><meta charset="utf-8">',
      '<title>mmv: find the moment</title>', f'<style>{_STYLE}</style></head><body>',
      f'<h1>Find the moment <span class="note">in {e(index_name)}: {files} files, '
      f'{windows} windows</span></h1>',
      '<form id="text" method="get" action="/">',
      f'<input type="search" name="q" id="q" value="{e(query)}" '
      'placeholder="a sentence: what happens in the moment" autofocus>',
      f'<input type="hidden" name="top_k" value="{top_k}">',
      '<button type="submit" id="go">Search</button></form>',
      '<form id="upload" method="post" action="/" enctype="multipart/form-data">',
      '<label>or a sound or a clip: <input type="file" name="file" id="file" '
      'accept="audio/*,video/*"></label>',
      '<label><select name="against"><option value="sound">sound-alike</option>'
      '<option value="video">what looks like the sound</option></select></label>',
      '<button type="submit" id="send">Find alike</button>',
      f'<span class="note">(up to {max_upload_mb:g} MB)</span></form>' if max_upload_mb
      else '</form>',
  ]
  parts += [f'<p class="note">{e(n)}</p>' for n in notes]
  if error:
    parts.append(f'<p class="error" id="error">{e(error)}</p>')
  elif results is not None:
    parts.append(f'<p id="heading">{e(heading or "")}: {len(results)} moments</p>')
    parts.append('<div class="grid" id="results">' +
                 ''.join(_hit(h, has_picture(h['file'])) for h in results) + '</div>')
  parts.append('</body></html>')
  return '\n'.join(parts)
