"""The evaluation's progress display: one line per benchmark split, none per feature set."""

import types

import pytest

from mmv import benchmarks
from mmv import evaluate
from mmv import train
from mmv.evaluators import features as features_lib


class _Bar:
  """Records what evaluation does with its tqdm bars (tqdm.tqdm's arguments it uses)."""
  made = []

  def __init__(self, *, total, desc, disable, **kwargs):
    del kwargs
    self.total, self.desc, self.disable, self.roles = total, desc, disable, []
    _Bar.made.append(self)

  def set_postfix_str(self, role):
    self.roles.append(role)

  def update(self):
    pass

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    pass


@pytest.mark.slow
def test_one_progress_line_per_split_counts_every_feature_set(config, tmp_path, monkeypatch):
  config.train.steps = 1
  config.train.checkpoint_every = 1
  workdir = str(tmp_path)
  train.train(config, workdir)
  bench = benchmarks.get('synthetic')
  prepared = bench.prepare(config.data.data_dir)
  _Bar.made = []
  monkeypatch.setattr(evaluate, 'tqdm', types.SimpleNamespace(tqdm=_Bar))
  extract = features_lib.extract
  extract_progress = []
  monkeypatch.setattr(features_lib, 'extract', lambda *args, progress, **kwargs: (
      extract_progress.append(progress) or extract(*args, progress=progress, **kwargs)))
  evaluate.evaluate_step(config, bench, prepared, workdir, 1, cache_features=False)

  assert [b.desc for b in _Bar.made] == [f'synthetic split {s} step 1' for s in prepared]
  bar, = _Bar.made
  assert bar.disable is None  # tqdm: a bar on a terminal, none in a log file.
  # Every feature set the protocols extract ticks it, up to its total; none has a bar itself.
  assert len(bar.roles) == bar.total == len(set(bar.roles)) == len(extract_progress)
  assert bar.total == config.eval.synthetic.train_passes + 2  # Linear, zero-shot, retrieval.
  assert set(extract_progress) == {None}
