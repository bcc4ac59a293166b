"""unconv: a REST inference service for a deconvnet visualiser, an auto-encoder and a VAE."""

__version__ = "0.1.0"
