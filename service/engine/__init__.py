"""The engine: models, their batchers and the work of a batch. It knows nothing of HTTP: no
module here imports FastAPI or Starlette (tests/service/engine/test_layers.py)."""

from .engine import Engine
from .errors import ErrorCode, RequestError, not_ready, shutting_down
from .registry import ServedModel

__all__ = ["Engine", "ErrorCode", "RequestError", "ServedModel", "not_ready", "shutting_down"]
