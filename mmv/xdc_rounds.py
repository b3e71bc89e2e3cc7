"""XDC's rounds in the training loop: cluster, label, re-initialise the classifiers, go on.

Training runs in rounds of `xdc.round_steps` steps; round r takes the train state from step
r·round_steps to (r + 1)·round_steps. `mmv.train` asks `Rounds.segment(state)` before each
round (and on resume) for the state to train on, the round's last step and the pseudo-labels
of its input. At a round's first step (state.step a multiple of round_steps):
  1. the features of every training record: one pass over the training split(s) in evaluation
     mode (`mmv.evaluators.features.extract`: split over the mesh's devices, `xdc.feature_clips`
     clips averaged per record), video and audio encoders together, with each record's key;
  2. k-means of each clustering of the variant (`mmv.kmeans`, split over the same devices):
     'video' / 'audio' that modality's features, 'joint' both concatenated; L2-normalised first
     with `xdc.normalize`; initialised from (seed, round, clustering);
  3. the labels, keys and centroids written to workdir/xdc/round_NNNN.npz (`mmv.pseudo_labels`),
     by process 0;
  4. the classifiers (params `head_*`) re-initialised from (seed, round) and their optimiser
     state reset (the 'heads' part of XDC's optimiser), the schedule kept on the train step;
  5. the input rebuilt from the data position reached, every example with its record's labels
     (`pseudo_label`, the clusterings packed into one int32; −1 for a record not clustered,
     e.g. one that failed to decode, which the loss leaves out).
A round whose file exists (a run stopped after writing it) is loaded instead of clustered
again, and a run resumed inside a round loads that round's file: the checkpoint's step fixes
the round, and the file must name the same first step and settings. Every step thus sees the
labels and classifiers it would have seen without stopping, and the train state after it is
the same (tests/test_xdc.py).

Feature extraction is `extract`'s: a single process (it uses all of its host's devices).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from mmv import kmeans
from mmv import optim
from mmv import pseudo_labels
from mmv.data import keys as key_ops
from mmv.data import mixture
from mmv.evaluators import features as features_lib
from mmv.models import xdc as xdc_model

_HEAD_SALT = 0x5dc  # Folded into the seed for the classifiers' initialisations.


def _is_spec(x):
  return isinstance(x, tuple) and len(x) == 3


def _normalize(x):
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def reinit_heads(state, rng, *, model, tx, batch):
  """`state` with new classifier params (from `rng`) and a new 'heads' optimiser state."""
  fresh = model.init(rng, batch, train=False)['params']
  params = {name: fresh[name] if name.startswith(xdc_model.HEAD_PREFIX) else value
            for name, value in state.params.items()}
  inner = dict(state.opt_state.inner_states)
  inner['heads'] = tx.init(params).inner_states['heads']
  opt_state = optim.with_schedule_count(state.opt_state._replace(inner_states=inner),
                                        state.step)
  return state.replace(params=params, opt_state=opt_state)


def settings(config):
  """What a round's labels depend on besides the params: a file made otherwise is refused."""
  xdc = {k: v for k, v in config.xdc.to_dict().items() if k != 'feature_batch_clips'}
  return {'xdc': xdc, 'seed': int(config.seed),
          'sources': [[s.data_dir, s.split] for s in mixture.train_sources(config.data)]}


class Rounds:
  """The round hook of `mmv.train` for XDC (see the module doc).

  clusterings: {name: k} of the variant; init_batch: the model's zero batch (to initialise the
  classifiers). `abstract`: the train state's shapes and shardings.
  """

  def __init__(self, config, workdir, mesh, model, tx, abstract, *, clusterings, init_batch):
    self.config, self.workdir, self.mesh, self.model = config, workdir, mesh, model
    self.clusterings = dict(clusterings)
    self.round_steps = config.xdc.round_steps
    self.settings = settings(config)
    shardings = jax.tree.map(lambda s: s.sharding, abstract)
    self._reinit = jax.jit(
        functools.partial(reinit_heads, model=model, tx=tx, batch=init_batch),
        out_shardings=shardings, donate_argnums=0)
    self._video_dim = jax.eval_shape(
        lambda p: model.apply(p, init_batch['video'], method=model.embed_video)[0],
        {'params': abstract.params, 'batch_stats': abstract.batch_stats}).shape[-1]

  def config_until(self, last_step):
    """The config with `train.steps` = `last_step`: the loop's for one round (it saves and
    logs at its end); the schedule and everything else keep the whole run's."""
    config = self.config.copy_and_resolve_references()
    config.train.steps = last_step
    return config

  def compiled_once(self, compile_fn):
    """`compile_fn` (the loop's: a batch → (step, flops)) compiling once for every round: each
    round's batches have the same shapes and shardings."""
    compiled = {}

    def compile_once(batch):
      key = jax.tree.map(lambda x: (x.shape, x.dtype, x.sharding), batch)
      key = (jax.tree.structure(batch), tuple(jax.tree.leaves(key, is_leaf=_is_spec)))
      if key not in compiled:
        compiled[key] = compile_fn(batch)
      return compiled[key]

    return compile_once

  def segment(self, state):
    """(state, the round's last step, key_labels for `mmv.data.stream.train_stream`) to train
    the steps after `state.step`; key_labels None once training is over."""
    step, total = int(state.step), self.config.train.steps
    if step >= total:
      return state, total, None
    index = step // self.round_steps
    start = index * self.round_steps
    found = pseudo_labels.load(self.workdir, index, step=start, settings=self.settings)
    if step == start:
      if found is None:
        found = self._cluster(state, index, start)
      elif jax.process_index() == 0:
        print(f'xdc round {index}: labels loaded from '
              f'{pseudo_labels.round_path(self.workdir, index)}', flush=True)
      rng = jax.random.fold_in(jax.random.fold_in(jax.random.key(self.config.seed), _HEAD_SALT),
                               index)
      state = self._reinit(state, rng)
    elif found is None:
      raise FileNotFoundError(
          f'resuming at step {step}, inside XDC round {index} (steps {start}–'
          f'{start + self.round_steps}), whose labels '
          f'{pseudo_labels.round_path(self.workdir, index)} are missing: restore them, or '
          f'restart from the checkpoint of step {start}')
    labels = pseudo_labels.pack(found.labels, self.clusterings)
    return state, min(start + self.round_steps, total), (found.keys, labels)

  def features(self, state):
    """(keys int64 [n] unique, {'video', 'audio': float32 [n, F]}) of every training record,
    the clips' features averaged, in evaluation mode."""
    c, model = self.config, self.model

    def embed(variables, batch):
      video = model.apply(variables, batch['video'], method=model.embed_video)[0]
      audio = model.apply(variables, batch['audio'], method=model.embed_audio)[0]
      return {'features': jnp.concatenate([video, audio], -1)}

    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    keys, features = [], []
    for source in mixture.train_sources(c.data):
      data = c.data.copy_and_resolve_references()
      data.data_dir, data.num_test_clips = source.data_dir, c.xdc.feature_clips
      batch = features_lib.videos_per_batch(c.xdc.feature_batch_clips, c.xdc.feature_clips,
                                            self.mesh.devices.size, 2**31)
      arrays, skipped = features_lib.extract(
          data, source.split, jax.jit(embed), variables, self.mesh, batch_size=batch,
          progress=f'features of {source.name}')
      if skipped and jax.process_index() == 0:
        print(f'{source.name}: {skipped} records failed to decode: not clustered', flush=True)
      keys.append(key_ops.to_int64(arrays['key']))
      features.append(arrays['features'].mean(1))
    keys, features = np.concatenate(keys), np.concatenate(features)
    keys, first = np.unique(keys, return_index=True)  # Identical records share a key.
    features = features[first]
    return keys, {'video': features[:, :self._video_dim], 'audio': features[:, self._video_dim:]}

  def _cluster(self, state, index, start):
    c = self.config.xdc
    keys, features = self.features(state)
    if c.normalize:
      features = {k: _normalize(v) for k, v in features.items()}
    features['joint'] = np.concatenate([features['video'], features['audio']], -1)
    labels, centroids = {}, {}
    for i, (name, k) in enumerate(self.clusterings.items()):
      if len(keys) < k:
        raise ValueError(f'xdc.k={k} clusters of {len(keys)} training records: lower xdc.k')
      seed = (self.config.seed * 1_000_003 + index * 101 + i) % 2**31
      result = kmeans.fit(features[name], k, mesh=self.mesh, seed=seed, init=c.kmeans_init,
                          iterations=c.kmeans_iterations, tol=c.kmeans_tol)
      labels[name], centroids[name] = result.labels, result.centroids
      if jax.process_index() == 0:
        sizes = np.bincount(result.labels, minlength=k)
        print(f'xdc round {index}: k-means of {name} features {features[name].shape}: '
              f'{result.iterations} iterations, inertia {result.inertia:.4g}, clusters of '
              f'{sizes.min()}–{sizes.max()} records', flush=True)
    if jax.process_index() == 0:
      path = pseudo_labels.save(self.workdir, index, step=start, keys=keys, labels=labels,
                                centroids=centroids, settings=self.settings)
      print(f'xdc round {index}: labels written to {path}', flush=True)
    return pseudo_labels.Round(index=index, step=start, keys=keys, labels=labels,
                               centroids=centroids, settings=self.settings)
