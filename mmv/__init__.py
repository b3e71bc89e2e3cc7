"""mmv: self-supervised multimodal (video, audio, text) representation learning in JAX."""
