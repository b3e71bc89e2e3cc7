"""The optimiser from config: Adam (or AdamW) with linear warmup and half-period cosine decay."""

import optax


def learning_rate_schedule(c, total_steps):
  """Linear warmup to `c.learning_rate` over `c.warmup_steps`, then cosine to the end."""
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=c.learning_rate, warmup_steps=c.warmup_steps,
      decay_steps=max(total_steps, c.warmup_steps + 1),
      end_value=c.learning_rate * c.end_learning_rate_factor)


def make_optimizer(c, total_steps):
  schedule = learning_rate_schedule(c, total_steps)
  if c.weight_decay:
    return optax.adamw(schedule, weight_decay=c.weight_decay)
  return optax.adam(schedule)
