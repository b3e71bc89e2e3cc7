"""Reading data: the DMVR record format, the tf.data pipeline, the synthetic set (the converter
that makes records from media files is `mmv.ingest`)."""

import os

# TensorFlow's pooling CPU allocator: without it every batch of uint8 crops (tens of MB) is a
# fresh mmap the kernel zero-fills page by page, which costs the pipeline about a quarter of
# its CPU time. TensorFlow reads this when it first allocates, so setting it here (before any
# pipeline runs) is in time; a value already in the environment wins.
os.environ.setdefault('TF_CPU_ALLOCATOR_USE_BFC', 'true')
