"""The protocols of one benchmark split on one checkpoint: the feature sets each protocol reads
(through the feature cache) and the metrics they give."""

import functools
import json
import os

import numpy as np

from mmv import evaluate_inputs
from mmv import evaluate_protocol
from mmv import methods
from mmv.benchmarks import protocols
from mmv.benchmarks import voc2007
from mmv.data import records
from mmv.evaluators import features as features_lib
from mmv.evaluators import jax_linear
from mmv.evaluators import jax_mlp
from mmv.evaluators import linear_probe
from mmv.evaluators import multilabel
from mmv.evaluators import retrieval
from mmv.evaluators import tagging
from mmv.evaluators import zero_shot


def _probe(block, train, test, seed):
  c_grid = tuple(block.c)
  if block.classifier == 'svm':
    return linear_probe.linear_probe(*train, *test, c_grid=c_grid, folds=block.cv_folds,
                                     seed=seed, max_iter=block.svm_max_iter,
                                     dual=protocols.SVM_SOLVERS[block.svm_solver])
  return jax_linear.linear_probe(*train, *test, c_grid=c_grid, folds=block.cv_folds, seed=seed,
                                 solver=block.classifier.removeprefix('jax_'))


# Protocols that embed captions or class names (the text tower, S_vat).
TEXT_PROTOCOLS = ('retrieval', 'zero_shot')


def _prefixed(prefix, result):
  return {f'{prefix}{k}': v for k, v in result.items()}


class SplitEvaluation:
  """The protocols of one benchmark split on one checkpoint, features through the cache."""

  def __init__(self, config, bench, prepared, step, checkpoint, cache_dir, progress, key):
    """`progress`: a tqdm bar over the split's feature sets (`feature_roles`), or None."""
    self.config, self.bench, self.prepared, self.step = config, bench, prepared, step
    self.block = evaluate_protocol.protocol(config, bench)
    self.data = evaluate_protocol.benchmark_data_config(config, bench, prepared)
    self.key = key  # `feature_key`: the cache entries' settings besides the data.
    self.checkpoint = checkpoint
    self.cache_dir = cache_dir
    self.progress = progress
    self.counts = {}  # role → {'listed', 'read', 'skipped'}.
    self.unreadable = {}  # 'train' | 'test' → the unreadable shard tails, where videos were lost.
    self._linear_test = None

  def _embed_fn(self, with_text):
    if self.bench.modality == 'image':
      # The deflated model (a deflated workdir's own, or the video model deflated on loading)
      # on the 1-frame clips of the image records.
      _, variables, mesh = self.checkpoint.image_restored
      return self.checkpoint.embed_fn('image', with_text), variables, mesh
    _, variables, mesh = self.checkpoint.restored
    return self.checkpoint.embed_fn(self.bench.modality, with_text), variables, mesh

  def features(self, role, split, *, with_text=False, augment_seed=None, **data_changes):
    data = evaluate_protocol.replace(self.data, **data_changes)
    if with_text:
      data.modalities = tuple(data.modalities) + ('text',)
    directory = self.cache_dir and os.path.join(self.cache_dir, self.prepared.split, role)
    side = {s.split: s for s in (self.prepared.train, self.prepared.test) if s}[split]
    arrays, skipped, cached = features_lib.cached_extract(
        directory, data, split, functools.partial(self._embed_fn, with_text), step=self.step,
        key=self.key, modality=self.bench.modality, with_text=with_text,
        augment_seed=augment_seed, batch_clips=self.config.eval.batch_size,
        num_videos=side.num_clips,
        progress=None)  # The split's one bar (`progress`) counts the roles instead.
    if self.progress is not None:
      self.progress.set_postfix_str(role)
      self.progress.update()
    # Listed: what the benchmark's split lists (converted or not); read: what reaches the
    # metrics. The difference is every video lost, whether at conversion, as a record that
    # fails to decode, or in an unreadable shard tail whose records cannot be counted.
    listed = side.num_listed
    read = int(len(arrays['label']))
    if read > listed:
      raise ValueError(f'{self.bench.name} split {self.prepared.split}: {read} videos read from '
                       f'{data.data_dir}/{split}-* but the split lists {listed}: these are not '
                       'the shards it was prepared into')
    self.counts[role] = {'listed': listed, 'read': read, 'skipped': listed - read}
    if read < listed and split not in self.unreadable:
      self.unreadable[split] = list(records.read_contents(
          records.split_files(data.data_dir, split)).tails)
    self._say(role, f'features from the cache ({read} of {listed} videos)' if cached else
              f'features computed ({read} of {listed} videos; {skipped} records failed)')
    if not len(arrays['label']):
      raise ValueError(f'{self.bench.name} split {self.prepared.split}: no video of '
                       f'{data.data_dir}/{split}-* could be read ({skipped} skipped)')
    return arrays

  def train_passes(self):
    """(features [videos, passes, D] of the augmented training passes, their labels)."""
    augment = self.block.get('train_augment', True)
    passes = [self.features(f'train_pass{p}', self.prepared.train.split,
                            augment_seed=p if augment else None)
              for p in range(self.block.train_passes)]
    labels = np.asarray(passes[0]['label'])
    if any(not np.array_equal(p['label'], labels) for p in passes[1:]):
      raise ValueError('the augmented passes over the training videos read different videos '
                       '(a record fails for some clips only); set data.strict to find it')
    return np.stack([np.asarray(p['features'])[:, 0] for p in passes], axis=1), labels

  def mlp(self):
    """AudioSet: an MLP on every label of the clips (multi-hot), mAP / AUC / d' on the test
    clips (`jax_mlp`, `tagging`)."""
    train, labels = self.train_passes()
    test = self.linear_test()
    b = self.block
    scores, info = jax_mlp.mlp_probe(
        train, labels, test['features'], hidden=tuple(b.mlp_hidden), epochs=b.mlp_epochs,
        batch_videos=b.mlp_batch_videos, learning_rate=b.mlp_learning_rate,
        weight_decay=b.mlp_weight_decay, dropout=b.mlp_dropout, seed=self.config.seed)
    result = tagging.tagging_metrics(scores, test['label'], list(self.prepared.class_names))
    result.update(info, num_train_videos=int(train.shape[0]),
                  num_test_videos=int(scores.shape[0]),
                  num_train_labels=int(np.asarray(labels).sum()),
                  num_test_labels=int(np.asarray(test['label']).sum()))
    return _prefixed('mlp_', result)

  def linear(self):
    train, labels = self.train_passes()
    test = self.linear_test()
    if evaluate_protocol.multi_label(self.bench):
      return self.linear_multilabel(train, labels, test)
    for role, y in (('training', labels), ('test', test['label'])):
      if (np.asarray(y) < 0).any():
        raise ValueError(f'{self.bench.name} split {self.prepared.split}: '
                         f'{int((np.asarray(y) < 0).sum())} {role} videos have no label')
    return _prefixed('linear_', _probe(self.block, (train, labels),
                                       (test['features'], test['label']), self.config.seed))

  def linear_multilabel(self, train, labels, test):
    """VOC: one binary SVM per class on the multi-hot labels (classes, difficult twins)."""
    if self.block.classifier != 'svm':
      raise ValueError(f'eval.{self.bench.name}.classifier must be svm: the multi-label probe '
                       'is scikit-learn\'s')
    result = multilabel.linear_probe_multilabel(
        train, voc2007.targets(labels), test['features'], voc2007.targets(test['label']),
        c_grid=tuple(self.block.c), folds=self.block.cv_folds, seed=self.config.seed,
        max_iter=self.block.svm_max_iter, dual=protocols.SVM_SOLVERS[self.block.svm_solver],
        class_names=voc2007.CLASSES)
    result['AP'] = dict(zip(voc2007.CLASSES, result['AP']))
    return _prefixed('linear_', result)

  def linear_test(self):
    if self._linear_test is None:  # Shared by the linear probe and zero-shot classification.
      self._linear_test = self.features('linear_test', self.prepared.test.split,
                                        num_test_clips=self.block.get('test_clips', 1))
    return self._linear_test

  def _say(self, role, what):
    print(f'{self.bench.name} split {self.prepared.split} step {self.step} {role}: {what}',
          flush=True)

  def retrieval(self):
    test = self.features('retrieval_test', self.prepared.test.split, with_text=True,
                         num_test_clips=self.block.retrieval_clips)
    queries = np.flatnonzero(test['has_text'])
    if not len(queries):
      raise ValueError(f'{self.bench.name} split {self.prepared.split}: no test video has a '
                       'caption to retrieve it with')
    result = retrieval.retrieval_metrics(np.asarray(test['text'])[queries], test['video'],
                                         text_to_video=queries)
    return {k if k[:4] in ('t2v_', 'v2t_') else f'retrieval_{k}': v for k, v in result.items()}

  def zero_shot(self):
    test = self.linear_test()
    captions = zero_shot.class_captions(self.prepared.class_names,
                                        self.block.zero_shot_template)
    result = zero_shot.zero_shot_classification(test['video'], self.encode_captions(captions),
                                                test['label'])
    return _prefixed('zero_shot_', result)

  def encode_captions(self, captions):
    """S_vat embeddings [len(captions), vat] of `captions`, through the cache."""
    d = self.data
    wanted = json.loads(json.dumps({'step': self.step, 'captions': captions, 'vocab': d.vocab,
                                    'stop_words': d.stop_words, 'max_words': d.max_words,
                                    'model': self.key['model'],
                                    'checkpoint': self.key['checkpoint']}))
    directory = self.cache_dir and os.path.join(self.cache_dir, 'class_captions')
    hit = directory and features_lib.load(directory, wanted)
    if hit:
      self._say('class_captions', f'features from the cache ({len(captions)} captions)')
      return np.asarray(hit[0]['text'])
    tokens = evaluate_inputs.caption_tokens(d, captions)
    text = np.asarray(self.checkpoint.encode_text(self.checkpoint.restored[1], tokens))
    if directory:
      features_lib.save(directory, wanted, {'text': text})
    self._say('class_captions', f'features computed ({len(captions)} captions)')
    return text

  def run(self):
    result = {}
    served = served_protocols(self.config, self.bench)
    for name in self.bench.protocols:
      if name in served:
        result.update(getattr(self, name)())
      else:
        self._say(name, 'not run: the model has no text tower')
    return result


def served_protocols(config, bench):
  """`bench`'s protocols that the model of `config.method` can run: those that embed text
  (retrieval, zero-shot classification) need a text tower, which only some methods have.
  A benchmark of a modality the model does not embed is an error."""
  towers = methods.get(config).TOWERS
  # Images go through the video tower, deflated.
  tower = 'video' if bench.modality == 'image' else bench.modality
  if tower not in towers:
    through = ' (through the deflated video tower)' if bench.modality == 'image' else ''
    raise ValueError(f'benchmark {bench.name} embeds {bench.modality}{through}: method '
                     f'{config.get("method", "mmv")!r} has no {tower} tower (its '
                     f'towers: {", ".join(towers)})')
  return tuple(p for p in bench.protocols if 'text' in towers or p not in TEXT_PROTOCOLS)


def feature_roles(config, bench, block):
  """The feature sets `SplitEvaluation` extracts for `bench`'s protocols with `block`."""
  served = served_protocols(config, bench)
  roles = []
  if {'linear', 'mlp'} & set(served):
    roles += [f'train_pass{p}' for p in range(block.train_passes)]
  if {'linear', 'zero_shot', 'mlp'} & set(served):
    roles.append('linear_test')
  if 'retrieval' in served:
    roles.append('retrieval_test')
  return roles

