"""unconv: a REST inference service for a deconvnet visualiser, an auto-encoder and a VAE."""

from .runtime import limit_openmp_spinning

limit_openmp_spinning()  # before anything imports torch

__version__ = "0.1.0"
