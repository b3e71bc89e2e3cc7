"""Flax Linen encoders, projection heads and the assembled MMV model."""
