"""Writes the R(2+1)D-18 fixtures of tests/test_r2plus1d.py from torchvision's own network.

    pip install torch torchvision   # CPU wheels are enough; only this script needs them
    python tests/data/make_r2plus1d_fixture.py

torchvision's `r2plus1d_18` (fc replaced by an identity, as GDT's model.py does) gets the
weights `reference_weights(names, shapes)` makes with numpy (a seed per tensor name), so the test
rebuilds the same 31.3M weights without storing them. Written:

- r2plus1d_fixture.npz: the state dict's names and shapes in torchvision's order; a random input
  [2, 3, 8, 32, 32] (N, C, T, H, W); the network's features [2, 512] in eval mode (running
  statistics) and in train mode (batch statistics).
- r2plus1d_stem_zip.pth, r2plus1d_stem_legacy.pth: the stem's tensors saved with torch.save as a
  GDT checkpoint is laid out ({'model': {'module.video_network.base.' + name: tensor}, 'epoch',
  'args': an argparse.Namespace}), in the zip format (torch >= 1.6) and in the legacy format
  (GDT's release era, torch 1.3), for the loader of mmv.tools.torchvision_checkpoint.

Recorded with torch 2.13.0+cpu and torchvision 0.28.0.
"""

import argparse
import os
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
GDT_PREFIX = 'module.video_network.base.'


def reference_weights(names, shapes):
  """{name: array}: conv kernels He-normal, BN scale/var in [0.5, 1.5], bias/mean ~ N(0, 0.1²)."""
  out = {}
  for name, shape in zip(names, shapes):
    shape = tuple(int(d) for d in shape)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    leaf = name.rsplit('.', 1)[-1]
    if leaf == 'num_batches_tracked':
      out[name] = np.zeros(shape, np.int64)
    elif len(shape) > 1:
      out[name] = (rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))).astype(
          np.float32)
    elif leaf in ('weight', 'running_var'):
      out[name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
    else:
      out[name] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
  return out


def _import_torchvision():
  import torch  # pylint: disable=g-import-not-at-top
  try:
    import torchvision  # pylint: disable=g-import-not-at-top
  except RuntimeError:
    # A torchvision wheel whose compiled ops do not match this torch fails registering them;
    # the video ResNets use none of them, so import without the registrations.
    original = torch.library.register_fake
    torch.library.register_fake = lambda *a, **k: (lambda f: f)
    try:
      import torchvision  # pylint: disable=g-import-not-at-top
    finally:
      torch.library.register_fake = original
  return torch, torchvision


def main():
  torch, torchvision = _import_torchvision()
  model = torchvision.models.video.r2plus1d_18()
  model.fc = torch.nn.Identity()
  state = model.state_dict()
  names = list(state)
  shapes = [tuple(v.shape) for v in state.values()]
  weights = reference_weights(names, shapes)
  model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
  x = np.random.default_rng(0).standard_normal((2, 3, 8, 32, 32)).astype(np.float32)
  with torch.no_grad():
    model.eval()
    eval_out = model(torch.from_numpy(x)).numpy()
    model.train()
    train_out = model(torch.from_numpy(x)).numpy()
  np.savez_compressed(
      os.path.join(HERE, 'r2plus1d_fixture.npz'), names=np.array(names),
      ndims=np.array([len(s) for s in shapes]), dims=np.array([d for s in shapes for d in s]),
      input=x, eval_features=eval_out, train_features=train_out,
      versions=np.array([torch.__version__, torchvision.__version__]))
  stem = {GDT_PREFIX + k: torch.from_numpy(v) for k, v in weights.items() if k.startswith('stem')}
  checkpoint = {'model': stem, 'epoch': 201, 'args': argparse.Namespace(lr=0.01, hypothesis=1)}
  torch.save(checkpoint, os.path.join(HERE, 'r2plus1d_stem_zip.pth'))
  torch.save(checkpoint, os.path.join(HERE, 'r2plus1d_stem_legacy.pth'),
             _use_new_zipfile_serialization=False)
  print('eval features', eval_out[:, :4], 'train features', train_out[:, :4])


if __name__ == '__main__':
  main()
