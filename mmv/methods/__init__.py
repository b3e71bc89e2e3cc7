"""Training methods: what a run learns, chosen by `config.method`.

A method is one module here: how its views come from a record (its configs set `config.data`,
e.g. `data.views`), which towers embed them (its model), and its loss. Everything else —
the mesh, the train step and loop, checkpoints, preemption, exact resume, metrics, evaluation
and `mmv.inference` — serves every method unchanged. A method module defines:

  TOWERS                          the towers its model has, of 'video', 'audio', 'text'
                                  (optionally `towers(config)`: those a config's model has)
  config_fields()                 its own config block, `config.<name>` (None: it has none);
                                  every config has every method's block (configs/common.py)
  check_config(config)            clear errors for settings it cannot train with
  build_model(config)             a flax Module: `__call__(batch, train)` → the loss's inputs;
                                  `embed_video` / `embed_audio` → (features, z1, z2 or None)
                                  and `embed_text`, for the towers it has (evaluation)
  init_batch(config, batch_size)  zero arrays shaped as the model's training batch
  make_loss_fn(config, mesh, implementation=None)   (outputs, batch) → (loss, {term: value})
  make_optimizer(config)          the optax optimiser (its schedule count follows the step)
and, for a method that trains in rounds (XDC: new pseudo-labels every round), optionally
  rounds(config, workdir, mesh, model, tx, abstract)   the training loop's round hook: see
                                  `mmv.xdc_rounds.Rounds` (segment, config_until, compiled_once)
and, for a method that starts from trained weights (fine-tuning), optionally
  initial_state(config, state, mesh)   the initialised train state → the one a new run starts
                                  from (a resumed run restores its checkpoint instead)

A new method is a module and its entry in `METHODS`, plus a config file.
"""

from mmv.methods import brave
from mmv.methods import finetune
from mmv.methods import gdt
from mmv.methods import mmv
from mmv.methods import xdc

METHODS = {
    'gdt': gdt,
    'mmv': mmv,
    'xdc': xdc,
    'brave': brave,
    'finetune': finetune,
}


def get(config):
  """The method module of `config.method` (configs written before methods existed: MMV)."""
  name = config.get('method', 'mmv')
  if name not in METHODS:
    raise ValueError(f'unknown method {name!r} (config.method); choose from {sorted(METHODS)}')
  return METHODS[name]


def towers(config):
  """The towers of `config`'s model: its method's `towers(config)`, else its TOWERS."""
  method = get(config)
  return method.towers(config) if hasattr(method, 'towers') else method.TOWERS


def config_blocks():
  """{name: the config block of each method that has one}, for configs/common.py."""
  blocks = {name: module.config_fields() for name, module in METHODS.items()}
  return {name: block for name, block in blocks.items() if block is not None}
