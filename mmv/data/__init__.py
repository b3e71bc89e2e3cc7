"""Input data: the DMVR record format, the synthetic dataset and the tf.data pipeline."""
