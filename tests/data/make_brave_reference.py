"""Writes brave_haiku_names.json and brave_reference_outputs.npz from BraVe's own Haiku code.

Not a test and not part of mmv: it needs google-deepmind/brave and dm-haiku, which mmv does not
depend on. How the fixtures were made (see their `source` entries):

  python -m venv /tmp/brave-venv      # + a .pth naming mmv's venv site-packages (jax, tf, chex)
  /tmp/brave-venv/bin/pip install dm-haiku jmp tabulate
  git archive of github:google-deepmind/brave (commit 0ae20d9) unpacked at /tmp/brave-src
  cd /tmp/brave-src && /tmp/brave-venv/bin/python /work/wt/brave/tests/data/make_brave_reference.py OUT_DIR

1. Names: `hk.transform_with_state(init).init` (under `jax.vmap(axis_name='i')`, as its pmap) of `brave.models.brave.brave._build_parameterized_fns`
   (what `get_model(config).init_fn` runs) for two BraveConfigs: the released paper config
   (brave/models/brave/config.py: narrow video, broad audio) and one with video in the broad
   view too. Every param and state leaf: Haiku module path, name, shape, dtype. The shapes do
   not depend on the (tiny) input sizes used for init.
2. Outputs: params and state filled by `fake_values` below (a formula of the name and shape,
   which the test repeats independently), then BraVe's forward functions in inference mode
   (`is_training=False`, as brave/evaluate_video_embeddings.py calls the narrow one) on fixed
   inputs; the narrow, broad-video and broad-audio backbone features and the shared
   projector/predictor outputs (z, h) of the narrow features are saved.
"""

import json
import os
import sys
import zlib

import numpy as np


def fake_values(collection, module, name, shape):
  """Deterministic stand-in weights with sane scales (activations neither vanish nor explode)."""
  rng = np.random.default_rng(zlib.crc32(f'{collection}:{module}:{name}'.encode()))
  noise = rng.standard_normal(shape).astype(np.float32)
  if name == 'w':
    return noise * np.float32(np.sqrt(1.0 / np.prod(shape[:-1])))
  if name in ('b', 'offset'):
    return 0.1 * noise
  if name == 'scale':
    return 1.0 + 0.1 * noise
  if name == 'counter':
    return np.asarray(7, np.int32)
  if module.endswith('var_ema'):
    return 1.0 + 0.5 * np.abs(noise)
  return 0.1 * noise  # mean_ema average / hidden


def inputs():
  rng = np.random.default_rng(0)
  return {
      'narrow_video': rng.uniform(size=(2, 4, 32, 32, 3)).astype(np.float32),
      'broad_video': rng.uniform(size=(2, 4, 16, 16, 3)).astype(np.float32),
      'broad_audio': rng.standard_normal((2, 40, 16)).astype(np.float32),
  }


def main(out_dir):
  import haiku as hk  # pylint: disable=g-import-not-at-top
  import jax
  from brave.datasets import datasets
  from brave.models.brave import brave
  from brave.models.brave import config as brave_config

  paper = dict(brave_config.get_experiment_config().model)
  configs = {'paper_narrow_video_broad_audio': paper,
             'narrow_video_broad_video_and_audio': dict(paper, include_video_in_broad_view=True)}
  tiny = dict(num_frames_narrow=2, image_size_narrow=8, num_frames_broad=2, image_size_broad=8)
  names = {'source': ('hk.transform_with_state(init).init of brave.models.brave.brave.'
                      '_build_parameterized_fns, google-deepmind/brave 0ae20d9, dm-haiku '
                      f'{hk.__version__}, jax {jax.__version__}; see make_brave_reference.py'),
           'configs': {}}
  for key, cfg in configs.items():
    cfg = brave.BraveConfig(**dict(cfg, **tiny))
    init_fn, fns = brave._build_parameterized_fns(cfg)
    # BatchNorm's cross_replica_axis='i' needs a named axis in training mode, as under pmap.
    params, state = jax.vmap(init_fn, axis_name='i')(jax.random.PRNGKey(0)[None])
    params, state = jax.tree.map(lambda v: v[0], (params, state))
    names['configs'][key] = {
        collection: {m: {n: [list(v.shape), str(v.dtype)] for n, v in sorted(leaves.items())}
                     for m, leaves in sorted(tree.items())}
        for collection, tree in (('params', params), ('state', state))}
  with open(os.path.join(out_dir, 'brave_haiku_names.json'), 'w') as f:
    json.dump(names, f, indent=1, sort_keys=True)

  # Outputs of the config with every module, from `fake_values`.
  cfg = brave.BraveConfig(**dict(configs['narrow_video_broad_video_and_audio'], **tiny))
  _, fns = brave._build_parameterized_fns(cfg)
  layout = names['configs']['narrow_video_broad_video_and_audio']
  fake = {collection: {m: {n: fake_values(collection, m, n, tuple(s)) for n, (s, _) in leaves.items()}
                       for m, leaves in layout[collection].items()}
          for collection in ('params', 'state')}
  params, state = fake['params'], fake['state']
  x = inputs()
  view = lambda video=None, audio=None: datasets.View(video=video, audio=audio, labels=None)
  f_n, _ = fns.narrow_video_embedding(params, state, None, view(video=x['narrow_video']), False)
  f_v, _ = fns.broad_video_embedding(params, state, None, view(video=x['broad_video']), False)
  f_a, _ = fns.broad_audio_embedding(params, state, None, view(audio=x['broad_audio']), False)
  (z_n, h_n), _ = fns.n_video_to_b_audio(params, state, None, f_n, False)
  np.savez(os.path.join(out_dir, 'brave_reference_outputs.npz'), narrow_features=f_n,
           broad_video_features=f_v, broad_audio_features=f_a, narrow_z=z_n, narrow_h=h_n)


if __name__ == '__main__':
  main(sys.argv[1])
