"""The BN re-fit of a deflated model (`python -m mmv.tools.deflate`): its settings."""

import ml_collections


def config_fields():
  """`config.deflate`: the re-fit's settings (a locked block: a misspelt field is an error)."""
  c = ml_collections.ConfigDict()
  c.steps = 200  # Adam steps on the BatchNorm scales and offsets of the video backbone.
  c.learning_rate = 1e-3
  c.batch_size = 64  # Frames per step, over all devices (one per training clip).
  c.log_every = 20
  c.checkpoint_every = 100
  c.held_out_batches = 4  # Batches of the test split's frames for the L1 reported.
  return c
