"""The optimiser from config: Adam (or AdamW) with linear warmup and half-period cosine decay."""

import jax
import jax.numpy as jnp
import optax


def learning_rate_schedule(c, total_steps):
  """Linear warmup to `c.learning_rate` over `c.warmup_steps`, then cosine to the end."""
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=c.learning_rate, warmup_steps=c.warmup_steps,
      decay_steps=max(total_steps, c.warmup_steps + 1),
      end_value=c.learning_rate * c.end_learning_rate_factor)


def make_optimizer(c, total_steps, frozen=()):
  """The optimiser; params whose '/'-joined path is in `frozen` are never updated.

  The update that takes the train state from step s to s + 1 uses `learning_rate_schedule(s)`
  (optax's convention: the first update uses the schedule's value at 0), provided the state's
  schedule count follows the train step (`with_schedule_count`).

  Frozen params get `set_to_zero` instead of Adam, so they have no optimiser state either (and
  no weight decay, which would move them even with zero gradients).
  """
  schedule = learning_rate_schedule(c, total_steps)
  if c.weight_decay:
    tx = optax.adamw(schedule, weight_decay=c.weight_decay)
  else:
    tx = optax.adam(schedule)
  if not frozen:
    return tx

  def labels(params):
    path = lambda p: jax.tree_util.keystr(p, simple=True, separator='/')
    return jax.tree_util.tree_map_with_path(
        lambda p, _: 'frozen' if path(p) in frozen else 'trained', params)

  return optax.multi_transform({'trained': tx, 'frozen': optax.set_to_zero()}, labels)


def _is_schedule_state(x):
  return isinstance(x, optax.ScaleByScheduleState)


def with_schedule_count(opt_state, step):
  """`opt_state` with the learning-rate schedule's count set to `step`.

  The train step keeps the optimiser state of a step it skips (a non-finite loss), count
  included; setting the count to the train step keeps the schedule on the same clock. Adam's
  own count, which its bias correction divides by, stays the number of updates its moments took.
  """
  leaves = jax.tree.leaves(opt_state, is_leaf=_is_schedule_state)
  if not any(map(_is_schedule_state, leaves)):
    raise ValueError('the optimiser state has no learning-rate schedule count '
                     '(optax.ScaleByScheduleState) to set')
  return jax.tree.map(
      lambda x: x._replace(count=jnp.asarray(step, x.count.dtype)) if _is_schedule_state(x)
      else x, opt_state, is_leaf=_is_schedule_state)
