"""BraVe's pure pieces: the head, the loss (against numpy, with its stop-gradient), the masks."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mmv.methods import brave as method
from mmv.models import brave as model_lib
from mmv.models import tiny


def np_regression_loss(x, y, mask=None):
  """0.5·||x/|x| − y/|y|||² averaged over the rows; a norm ≤ 1e-5 counts as 1e-5."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  nx = np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-5)
  ny = np.maximum(np.linalg.norm(y, axis=-1, keepdims=True), 1e-5)
  per = 0.5 * np.sum((x / nx - y / ny) ** 2, axis=-1)
  mask = np.ones(len(x)) if mask is None else np.asarray(mask, np.float64)
  return np.sum(per * mask) / max(mask.sum(), 1.0)


def test_regression_loss_matches_numpy_on_hand_made_vectors():
  x = np.array([[1., 0., 0.], [0., 2., 0.], [3., 4., 0.], [1., 2., 3.]], np.float32)
  y = np.array([[1., 0., 0.], [0., -1., 0.], [0., 0., 5.], [0., 0., 0.]], np.float32)
  # Same direction → 0; opposite → 2; orthogonal → 1; y = 0 (safe norm: y/1e-5 = 0) → 0.5.
  per = [0.0, 2.0, 1.0, 0.5]
  np.testing.assert_allclose(method.regression_loss(x, y), np.mean(per), rtol=1e-6)
  np.testing.assert_allclose(method.regression_loss(x, y), np_regression_loss(x, y), rtol=1e-6)
  mask = np.array([1., 1., 0., 0.], np.float32)
  np.testing.assert_allclose(method.regression_loss(x, y, mask), 1.0, rtol=1e-6)
  assert np.isfinite(jax.grad(lambda y: method.regression_loss(x, y))(y)).all()


def _outputs(rng, b=5, d=8, modalities=('video', 'audio')):
  return {f'{k}_{side}_{m}': rng.standard_normal((b, d)).astype(np.float32)
          for m in modalities for side in ('broad', 'narrow') for k in ('z', 'h')}


@pytest.mark.parametrize('modalities', [('video', 'audio'), ('audio',), ('video',)])
def test_brave_loss_is_the_mean_of_the_cross_view_terms(modalities):
  rng = np.random.default_rng(0)
  out = _outputs(rng, modalities=modalities)
  batch = {'mask': np.array([1, 1, 1, 1, 0], np.float32),
           'audio_mask': np.array([1, 0, 1, 1, 1], np.float32)}
  loss, terms = method.brave_loss(out, batch)
  expected = {}
  for m in modalities:
    mask = batch['mask'] * (batch['audio_mask'] if m == 'audio' else 1)
    expected[f'loss_b_to_n_{m}'] = np_regression_loss(out[f'h_broad_{m}'], out[f'z_narrow_{m}'],
                                                      mask)
    expected[f'loss_n_to_b_{m}'] = np_regression_loss(out[f'h_narrow_{m}'], out[f'z_broad_{m}'],
                                                      mask)
  assert set(terms) == set(expected)
  for k, v in expected.items():
    np.testing.assert_allclose(terms[k], v, rtol=1e-5)
  np.testing.assert_allclose(loss, np.mean(list(expected.values())), rtol=1e-5)


def test_gradients_flow_only_through_the_predictions():
  out = _outputs(np.random.default_rng(1))
  batch = {'mask': np.ones(5, np.float32), 'audio_mask': np.ones(5, np.float32)}
  grads = jax.grad(lambda o: method.brave_loss(o, batch)[0])(out)
  for k, g in grads.items():
    if k.startswith('z_'):
      assert not np.any(g), k  # The targets are stop_gradient(z).
    else:
      assert np.abs(g).sum() > 0, k
  # The gradient with respect to h is that of the numpy formula (central differences).
  h = out['h_broad_audio'].astype(np.float64)
  f = lambda h_: np_regression_loss(h_, out['z_narrow_audio']) / 4
  eps, (i, j) = 1e-4, (2, 3)
  hp, hm = h.copy(), h.copy()
  hp[i, j] += eps
  hm[i, j] -= eps
  np.testing.assert_allclose(grads['h_broad_audio'][i, j], (f(hp) - f(hm)) / (2 * eps),
                             rtol=1e-3)


def test_head_layout_and_normalisation():
  head = model_lib.ProjectAndPredict(output_dim=16, hidden_dim=32)
  x = jnp.asarray(np.random.default_rng(2).standard_normal((6, 12)), jnp.float32)
  variables = head.init(jax.random.PRNGKey(0), x, train=False)
  shapes = jax.tree.map(lambda v: v.shape, variables['params'])
  assert shapes == {
      'projector': {'dense_0': {'kernel': (12, 32), 'bias': (32,)}, 'bn_0': {'scale': (32,),
                    'bias': (32,)}, 'dense_1': {'kernel': (32, 16), 'bias': (16,)},
                    'bn_1': {'scale': (16,), 'bias': (16,)}},
      'predictor': {'dense_0': {'kernel': (16, 32), 'bias': (32,)}, 'bn_0': {'scale': (32,),
                    'bias': (32,)}, 'dense_1': {'kernel': (32, 16), 'bias': (16,)}}}
  (z, h), _ = head.apply(variables, x, train=True, mutable=['batch_stats'])
  # The projector ends with BatchNorm (batch statistics in training), the predictor does not.
  np.testing.assert_allclose(np.mean(z, 0), 0, atol=1e-5)
  np.testing.assert_allclose(np.var(z, 0), 1, atol=1e-3)
  assert np.abs(np.mean(h, 0)).max() > 1e-3


def _tiny_brave(broad_video=True, broad_audio=True):
  return model_lib.Brave(
      narrow_video=tiny.TinyVideoNet(width=2), head=model_lib.ProjectAndPredict(8, 16),
      broad_video=tiny.TinyVideoNet(width=2) if broad_video else None,
      broad_audio=tiny.TinyAudioNet(width=2) if broad_audio else None, narrow_key='video_n')


def _brave_config(**kw):
  return ml_collections.ConfigDict(dict(dict(
      optimizer='lars', learning_rate=0.1, warmup_steps=0, end_learning_rate_factor=0.0,
      weight_decay=1e-2, momentum=0.9, nesterov=True, trust_coefficient=0.001,
      predictor_lr_scale=10.0, predictor_pattern=r'.*predictor.*'), **kw))


@pytest.mark.slow
def test_weight_decay_and_predictor_scaling():
  batch = {'video_n': jnp.zeros((2, 2, 8, 8, 3)), 'video': jnp.zeros((2, 4, 4, 4, 3)),
           'audio': jnp.zeros((2, 16, 8, 1))}
  # Jitted: op by op, XLA compiles each of the many small operations on its own shapes.
  params = jax.jit(lambda key: _tiny_brave().init(key, batch, train=False))(
      jax.random.PRNGKey(0))['params']
  mask = method.weight_decay_mask(params)
  flat = {jax.tree_util.keystr(p, simple=True, separator='/'): v
          for p, v in jax.tree_util.tree_leaves_with_path(mask)}
  assert flat['head/projector/dense_0/kernel'] and flat['head/predictor/dense_1/kernel']
  assert all(v == k.endswith('/kernel') for k, v in flat.items())
  assert any(k.startswith('narrow_video/') and v for k, v in flat.items())
  for name in ('lars', 'adamw'):
    tx = method.optimizer(_brave_config(optimizer=name), _brave_config(), total_steps=10)
    init, update = jax.jit(tx.init), jax.jit(tx.update)
    state = init(params)
    # Zero gradients: only the decayed leaves (kernels) move.
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = update(zeros, state, params)
    moved = jax.tree.map(lambda u: bool(np.any(u)), updates)
    assert moved == jax.tree.map(bool, mask), name
    # Same gradient on a predictor bias and a projector bias: 10x the update (biases have no
    # trust ratio in LARS; Adam's first step is lr·sign, so only LARS shows the 10).
    ones = jax.tree.map(jnp.ones_like, params)
    updates, _ = update(ones, state, params)
    ratio = (updates['head']['predictor']['dense_0']['bias'][0] /
             updates['head']['projector']['dense_0']['bias'][0])
    np.testing.assert_allclose(ratio, 10.0 if name == 'lars' else 1.0, rtol=1e-5)
  with pytest.raises(ValueError, match='unknown brave.optimizer'):
    method.optimizer(_brave_config(optimizer='sgd'), _brave_config(), 10)
  # The schedule count is the one mmv.optim keeps on the train step's clock.
  from mmv import optim  # pylint: disable=import-outside-toplevel
  optim.with_schedule_count(method.optimizer(_brave_config(), _brave_config(), 10).init(params),
                            3)


@pytest.mark.slow
def test_model_outputs_and_embeddings():
  rng = np.random.default_rng(3)
  batch = {'video_n': rng.uniform(size=(3, 2, 8, 8, 3)).astype(np.float32),
           'video': rng.uniform(size=(3, 4, 4, 4, 3)).astype(np.float32),
           'audio': rng.standard_normal((3, 16, 8, 1)).astype(np.float32)}
  for bv, ba in ((True, True), (False, True), (True, False)):
    model = _tiny_brave(bv, ba)
    variables = model.init(jax.random.PRNGKey(0), batch, train=False)
    out, _ = model.apply(variables, batch, train=True, mutable=['batch_stats'])
    want = {f'{k}_{s}_{m}' for m, on in (('video', bv), ('audio', ba)) if on
            for k in 'zh' for s in ('broad', 'narrow')}
    assert set(out) == want and all(v.shape == (3, 8) for v in out.values())
    assert ('broad_video' in variables['params']) == bv
    feats, z, none = model.apply(variables, batch['video_n'], method=model_lib.Brave.embed_video)
    assert feats.shape == (3, 8) and z.shape == (3, 8) and none is None
    if not ba:
      with pytest.raises(ValueError, match='no audio backbone'):
        model.apply(variables, batch['audio'], method=model_lib.Brave.embed_audio)
