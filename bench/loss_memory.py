"""Memory per device of the dense and the chunked contrastive loss as the global batch grows.

    python bench/loss_memory.py [--batches 1024,2048,4096,8192,16384] [--devices 8]

Compiles the value and gradients of the MMV loss (NCE on 512-d S_va embeddings + MIL-NCE on
256-d S_vat embeddings with K=5 captions, as in the paper) for a batch split over fake CPU
devices, and reads XLA's memory analysis of the compiled per-device program. Nothing runs, so
large batches cost only compile time. Prints, per device: the temporary buffers XLA allocates
(the similarity matrices live there), and the peak = temporaries + arguments + outputs.
"""

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--batches', default='1024,2048,4096,8192,16384',
                      help='global batch sizes, comma-separated')
  parser.add_argument('--devices', type=int, default=8, help='fake CPU devices')
  parser.add_argument('--chunk_size', type=int, default=256,
                      help='candidates per block of the chunked loss')
  parser.add_argument('--captions', type=int, default=5, help='K captions per clip')
  return parser.parse_args()


def compiled_memory(loss, batch, captions, mesh, axes):
  """(temp bytes, peak bytes) per device of value_and_grad(loss) on a global batch."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jax.sharding import NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top
  split = NamedSharding(mesh, P(axes))
  shape = lambda *s: jax.ShapeDtypeStruct(s, jnp.float32, sharding=split)
  args = (shape(batch, 512), shape(batch, 512), shape(batch, 256), shape(batch, captions, 256),
          shape(batch), shape(batch, captions))
  grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)))
  stats = grad.lower(*args).compile().memory_analysis()
  peak = (stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes
          - stats.alias_size_in_bytes)
  return stats.temp_size_in_bytes, peak


def main():
  args = parse_args()
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             f' --xla_force_host_platform_device_count={args.devices}')
  sys.path.insert(0, ROOT)
  import functools  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from mmv import chunked_losses  # pylint: disable=g-import-not-at-top
  from mmv import losses  # pylint: disable=g-import-not-at-top
  from mmv import sharding  # pylint: disable=g-import-not-at-top

  mesh = sharding.make_mesh()
  axes = sharding.BATCH_AXES
  ring = dict(mesh=mesh, axes=axes, chunk_size=args.chunk_size)
  impls = {
      'dense': (losses.nce, losses.mil_nce),
      'chunked': (functools.partial(chunked_losses.nce, **ring),
                  functools.partial(chunked_losses.mil_nce, **ring)),
  }

  def loss_for(nce_fn, mil_nce_fn):
    def loss(video_va, audio_va, video_vt, text_vt, mask, text_mask):
      return (nce_fn(video_va, audio_va, mask=mask)
              + mil_nce_fn(video_vt, text_vt, mask=mask, y_mask=text_mask))
    return loss

  mib = lambda b: b / 2**20
  print(f'{jax.device_count()} x {jax.devices()[0].device_kind} devices, chunk_size '
        f'{args.chunk_size}, K={args.captions}; MiB per device (temporaries / peak)')
  print(f'{"global batch":>12} | {"dense temp":>11} {"dense peak":>11} | '
        f'{"chunked temp":>12} {"chunked peak":>12} | {"dense/chunked":>13}')
  for batch in map(int, args.batches.split(',')):
    row = {}
    start = time.time()
    for name, fns in impls.items():
      row[name] = compiled_memory(loss_for(*fns), batch, args.captions, mesh, axes)
    print(f'{batch:>12} | {mib(row["dense"][0]):>11.1f} {mib(row["dense"][1]):>11.1f} | '
          f'{mib(row["chunked"][0]):>12.1f} {mib(row["chunked"][1]):>12.1f} | '
          f'{row["dense"][1] / row["chunked"][1]:>12.1f}x   ({time.time() - start:.0f} s)',
          flush=True)


if __name__ == '__main__':
  main()
