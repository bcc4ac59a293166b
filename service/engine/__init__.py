"""The engine: models, their batchers and the work of a batch. It knows nothing of HTTP: no
module here imports FastAPI or Starlette (tests/service/test_layers.py).

This package is the engine's public surface, for the protocols over it (``service.api``): the
engine, its errors, a served model and its facts, and what a visualise request may choose, as
the model code defines it.
"""

from ..models import DEFAULT_K, DEFAULT_METHOD, METHODS, Visualisation
from .engine import Engine
from .errors import ErrorCode, RequestError, invalid_parameters, not_ready, shutting_down
from .registry import ModelState, ServedModel

__all__ = [
    "DEFAULT_K",
    "DEFAULT_METHOD",
    "METHODS",
    "Engine",
    "ErrorCode",
    "ModelState",
    "RequestError",
    "ServedModel",
    "Visualisation",
    "invalid_parameters",
    "not_ready",
    "shutting_down",
]
