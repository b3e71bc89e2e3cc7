"""Making records: media files decoded (PyAV) into DMVR-format shards, locally or with Beam.

`media` decodes a clip of a file (frames at a rate, mono audio), `timeline` places times in a
container, `clip_lists` reads what to convert (CSV rows, narration JSON), `clip_records` builds
a clip's record and picks its shard, `convert` writes shards with local processes (and is the
command line, `python -m mmv.ingest.convert`), `convert_beam` the same with Apache Beam,
`staging` moves finished outputs into place, `text_files` the label map and vocabulary.
The reader (`mmv.data`) does not import this package: both share only `mmv.data.format`.
"""
