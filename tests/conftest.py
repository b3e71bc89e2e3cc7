"""Test set-up: 8 fake CPU devices (before jax starts its backend), a small synthetic dataset."""

import atexit
import os
import shutil
import tempfile

# The tests compile many small programs and run each a few times: LLVM's optimisations
# (backend level 0 halves compile times) cost more than they save. XLA's own passes still run.
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8'
                           ' --xla_backend_optimization_level=0').strip()
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Nothing here uses Keras, but `import tensorflow` imports Keras 3's optimizers eagerly unless
# TF_USE_LEGACY_KERAS names tf_keras (not installed: TF then skips the import). That is 1.3 of
# the 4.3 CPU-seconds `import mmv.train` costs, in every pytest worker and launched process.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
# One compilation cache for the test run: the pytest-xdist workers inherit it from the
# controller (which imports this first), and so do the launch.py subprocesses the tests start.
# A program compiled again (a resumed run, the same config in another test) is loaded instead.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='mmv-test-jax-cache-')
  atexit.register(shutil.rmtree, os.environ['JAX_COMPILATION_CACHE_DIR'], ignore_errors=True)
os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # pylint: disable=wrong-import-position
import tensorflow as tf  # pylint: disable=wrong-import-position

from configs import tiny  # pylint: disable=wrong-import-position
from mmv.data import synthetic  # pylint: disable=wrong-import-position

tf.config.set_visible_devices([], 'GPU')


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  """A small synthetic dataset: 64 training and 32 test clips, 4 and 2 shards."""
  path = str(tmp_path_factory.mktemp('synthetic'))
  synthetic.generate(path, seed=0, splits={'train': 64, 'test': 32},
                     num_shards={'train': 4, 'test': 2})
  return path


@pytest.fixture
def config(data_dir):
  """configs/tiny.py shrunk for tests, on the small dataset."""
  return small_config(data_dir)


def small_config(data_dir):
  """configs/tiny.py shrunk for tests, on the dataset in `data_dir` (the `config` fixture)."""
  c = tiny.get_config()
  c.data.data_dir = data_dir
  c.data.shuffle_buffer = 16
  c.model.width = 8
  c.model.word_embedding_dim = 16
  c.model.text_hidden = 32
  c.model.va_dim = 32
  c.model.vat_dim = 16
  c.train.batch_size = 16
  c.train.steps = 4
  c.train.log_every = 1
  c.train.checkpoint_every = 2
  c.optim.warmup_steps = 2
  c.eval.batch_size = 16
  c.eval.synthetic.c = (1.0,)
  c.eval.synthetic.train_passes = 2
  c.eval.synthetic.test_clips = 2
  c.eval.synthetic.retrieval_clips = 2
  return c


def initialised_run(config, path, step, mesh=None):
  """`path` made a workdir of `config`: its config.json and a checkpoint of the freshly
  initialised train state at `step` (no training), sharded over `mesh` (by default
  `sharding.make_mesh()`; `config.mesh`'s to save kernels split as its training would)."""
  # pylint: disable=g-import-not-at-top  (jax set up above first)
  from mmv import checkpoint as ckpt_lib
  from mmv import sharding
  from mmv import train_step
  model = train_step.create_model(config)
  state = train_step.create_train_state(config, model, train_step.create_optimizer(config),
                                        mesh or sharding.make_mesh())
  checkpointer = ckpt_lib.Checkpointer(os.path.join(path, 'checkpoints'))
  checkpointer.save(step, state, signature=ckpt_lib.variable_signature(state.variables()))
  checkpointer.wait_until_finished()
  checkpointer.close()
  with open(os.path.join(path, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort(indent=1))
  return path


@pytest.fixture(scope='module')
def one_step_run(data_dir, tmp_path_factory):
  """(config, workdir) of a `small_config` run trained for 1 step (one per test module)."""
  from mmv import train  # pylint: disable=g-import-not-at-top  (jax set up above first)
  config = small_config(data_dir)
  config.train.steps = config.train.checkpoint_every = 1
  workdir = str(tmp_path_factory.mktemp('run'))
  train.train(config, workdir)
  return config, workdir


# The files that cost most (bench/test_times.py; 50-120 CPU-s each) run first: with `--dist
# loadfile` a worker takes the next file in collection order, and one of these left for last
# kept one worker busy a minute after the other had finished.
FIRST = ('test_multihost.py', 'test_preemption.py', 'test_finetune.py', 'test_evaluate.py',
         'test_bfloat16.py', 'test_import_deepmind.py', 'test_moments.py', 'test_brave_method.py')


def pytest_collection_modifyitems(items):
  """Runs the files named in FIRST before the others (each file's tests in their order)."""
  rank = {name: i for i, name in enumerate(FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(FIRST)))


def pytest_report_header(config):
  del config
  return f'jax {jax.__version__}, {jax.device_count()} devices ({jax.devices()[0].platform})'


# bench/test_times.py sets MMV_TEST_TIMES to a directory: each test's wall and CPU seconds (its
# process and the subprocesses it waited for) go to one JSON-lines file per pytest process.
_TIMES = os.environ.get('MMV_TEST_TIMES')


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
  del nextitem
  if not _TIMES:
    yield
    return
  import json  # pylint: disable=g-import-not-at-top
  import resource  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top

  def cpu():
    """CPU seconds of this process and of the subprocesses it waited for."""
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                          resource.RUSAGE_CHILDREN))
    return (own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime)

  wall, (own, children) = time.perf_counter(), cpu()
  yield
  own_after, children_after = cpu()
  line = {'test': item.nodeid, 'end': time.time(), 'wall_s': time.perf_counter() - wall,
          'cpu_s': own_after - own + children_after - children,
          'subprocess_cpu_s': children_after - children,
          'slow': item.get_closest_marker('slow') is not None}
  with open(os.path.join(_TIMES, f'{os.getpid()}.jsonl'), 'a') as f:
    f.write(json.dumps(line) + '\n')
