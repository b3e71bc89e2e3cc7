"""Whose statistics the S_va → S_vat head's BatchNorm holds after training (FAC graphs).

    .venv/bin/python bench/head_statistics.py --workdir runs/demo [--batches 8]

Restores the latest checkpoint of WORKDIR, runs `batches` evaluation batches of the run's
training split through the model (inference mode), and compares the moving mean of the
`va_to_vat` BatchNorm with the mean of its input — ReLU(S_va) through the head's linear layer —
for the videos, for their audio, and for the average of the two. Distances are root mean
squares over channels in units of the video's standard deviation. Trained as the released
models are (audio never passes through this head in training), the moving mean is nearest the
video's; an audio pass in training pulls it towards the video–audio average.
"""

import argparse
import json

import jax
import numpy as np

from mmv import inference
from mmv import sharding as shard_lib
from mmv.data import pipeline
from mmv.data import stream as data_stream



def head_inputs(config, model, variables, mesh, batches):
  """Pre-BatchNorm activations of the va_to_vat head, [N, vat], for the videos and the audio."""
  data = config.data.copy_and_resolve_references()
  data.modalities, data.num_test_clips, data.with_names = ('video', 'audio'), 1, False
  stream = data_stream.eval_stream(data, data.train_split, batch_size=64)
  dense = variables['params']['heads']['va_to_vat']['Dense_0']
  linear = lambda va: np.asarray(jax.nn.relu(va) @ dense['kernel'] + dense['bias'])
  video, audio = [], []
  for i, batch in enumerate(pipeline.global_batches(stream, shard_lib.batch_sharding(mesh), data)):
    if i == batches:
      break
    keep = np.asarray(batch['mask']) > 0
    video.append(linear(model.apply(variables, batch['video'], method=model.embed_video)[1])[keep])
    audio.append(linear(model.apply(variables, batch['audio'], method=model.embed_audio)[1])[keep])
  return np.concatenate(video), np.concatenate(audio)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', default='runs/demo', help='Training workdir (FAC graph).')
  parser.add_argument('--batches', type=int, default=8, help='Evaluation batches of 64 clips.')
  args = parser.parse_args()
  config = inference.read_run_config(args.workdir)
  if not config.model.head.startswith('fac'):
    parser.error(f'model.head={config.model.head!r}: only the FAC graphs have this head')
  (model, variables, mesh), step = inference.restore(config, args.workdir)
  video, audio = head_inputs(config, model, variables, mesh, args.batches)
  stats = variables['batch_stats']['heads']['va_to_vat']['BatchNorm_0']
  mean, var, video_var = np.asarray(stats['mean']), np.asarray(stats['var']), video.var(0)
  distance = lambda m: round(float(np.sqrt(np.mean((m - mean) ** 2 / video_var))), 3)
  print(json.dumps({
      'workdir': args.workdir, 'step': step, 'clips': len(video),
      'moving_mean_to_video_mean': distance(video.mean(0)),
      'moving_mean_to_audio_mean': distance(audio.mean(0)),
      'moving_mean_to_average_of_both': distance((video.mean(0) + audio.mean(0)) / 2),
      'moving_var_over_video_var_median': round(float(np.median(var / video_var)), 3)}))


if __name__ == '__main__':
  main()
