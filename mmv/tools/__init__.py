"""Command-line tools: vocabulary from word2vec, DeepMind checkpoint import."""
