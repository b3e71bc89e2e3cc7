"""mmv: self-supervised multimodal video representation learning (MMV) in JAX."""

import setuptools

# Pinned: the versions the project is built on and CI tests. For GPUs install the matching CUDA
# build of jaxlib on top (see the README); TPU VMs: `pip install "jax[tpu]==0.10.2"`.
INSTALL_REQUIRES = [
    'absl-py==2.5.1',
    'av==18.1.0',  # PyAV: FFmpeg's libraries for the converter, no ffmpeg binary needed.
    'chex==0.1.92',
    'faiss-cpu==1.15.1',  # Approximate search past exact search's size (mmv/ann.py).
    'flax==0.12.8',
    'jax==0.10.2',
    'jaxlib==0.10.2',
    'ml-collections==1.1.0',
    'numpy==2.4.6',
    'optax==0.2.8',
    'orbax-checkpoint==0.12.8',
    'pillow==12.3.0',  # Decoding still images (mmv/ingest/images.py): any mode, CMYK JPEGs.
    'python-multipart==0.0.34',  # Uploads to the web page (mmv/serve.py, Starlette's forms).
    'scikit-learn==1.9.1',
    'scipy==1.17.1',  # ImageNet's devkit meta.mat (mmv/benchmarks/imagenet.py).
    'starlette==1.10.0',  # The web page (python -m mmv.serve), served by uvicorn.
    'tensorboardX==2.6.5',
    'tensorflow-cpu==2.21.0',
    'tensorstore==0.1.86',  # Orbax's storage; mmv.checkpoint reads its errors and manifests.
    'tqdm==4.70.1',
    'uvicorn==0.54.0',
]

# Reading benchmarks from TensorFlow Datasets builds (mmv/benchmarks/tfds_source.py).
TFDS_REQUIRES = [
    'tensorflow-datasets==4.9.10',
]

# The converter on Apache Beam (mmv/ingest/convert_beam.py: --runner=DirectRunner, Dataflow,
# Flink, Spark); the local converter does not need it.
BEAM_REQUIRES = ['apache-beam==2.77.0']

TEST_REQUIRES = TFDS_REQUIRES + BEAM_REQUIRES + [
    # tensorflow-datasets imports it (without declaring it on Python >= 3.9) when it builds a
    # dataset, as tests/test_benchmarks.py does to make a tiny TFDS build.
    'httpx2==2.16.2',  # Starlette's TestClient (tests/test_serve.py), which deprecates httpx.
    'importlib_resources==7.1.0',
    # Drives Debian's `chromium` in tests/test_serve_browser.py (its own browsers are never
    # downloaded: the test points it at the system's executable).
    'playwright==1.65.2',
    'pytest==9.2.0',
    'pytest-xdist==3.8.0',
    # A hung test fails after pytest.ini's `timeout` instead of holding its xdist worker (and
    # with --dist loadfile the session) until CI's limit.
    'pytest-timeout==2.4.0',
]

setuptools.setup(
    name='mmv',
    version='0.1.0',
    description='Self-supervised multimodal (video, audio, text) video models in JAX/Flax.',
    python_requires='>=3.11',
    packages=setuptools.find_packages(include=['mmv', 'mmv.*']),
    install_requires=INSTALL_REQUIRES,
    extras_require={'test': TEST_REQUIRES, 'tfds': TFDS_REQUIRES, 'beam': BEAM_REQUIRES},
)
