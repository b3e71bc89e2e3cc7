"""`train.train`'s input as two processes would read it, importable into a test process (this
module defines no absl flags) and by the script tests/two_streams.py.

tests/test_finetune.py passes it as `mmv.finetune.run`'s `input_fn` for the one-process
reference of a two-process fine-tuning run: each process of a multi-process run reads its own
files; this reads the streams of processes 0 and 1 of 2 and puts them side by side in each
global batch, in process order, which is where a two-process run places them. With the same
devices in total, the two runs then compute on the same global batches.
"""

import numpy as np

from mmv import sharding as shard_lib
from mmv.data import pipeline
from mmv.data import stream as data_stream

STREAMS = 2


def two_stream_batches(config, mesh, data_state):
  """(global batches, state_after(n)) of the streams of processes 0 and 1 of 2, side by side."""
  local_batch = config.train.batch_size // STREAMS
  streams = [data_stream.train_stream(
      config.data, batch_size=local_batch, seed=config.seed, process_index=p,
      process_count=STREAMS, state=data_state) for p in range(STREAMS)]
  merged = ({k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
            for batches in zip(*streams))
  batches = pipeline.global_batches(merged, shard_lib.batch_sharding(mesh), config.data,
                                    config.data.prefetch)

  def state_after(n):  # As `data_stream.gather_state` writes it for two processes.
    states = [data_stream.gather_state(s.state_after(n)) for s in streams]
    return {'sources': states[0]['sources'],
            'positions': [s['positions'][0] for s in states],
            'skipped': [s['skipped'][0] for s in states]}

  return batches, state_after
