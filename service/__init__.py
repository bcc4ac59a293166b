"""unconv: a REST inference service for a deconvnet visualiser, an auto-encoder and a VAE."""

import os

# OpenMP threads that spin between parallel regions take the cores the event loop and the codec
# need between forward passes (measured: 3.1 vs 1.5 ms of CPU per request, docs/benchmarks.md).
# It must be set before torch loads OpenMP; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
