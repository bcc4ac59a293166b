"""The HTTP layer: routes, the OpenAPI contract, forms, schemas, errors, middleware and the
page, over the engine (``service.engine``), which knows nothing of HTTP.

``service.api:app`` is the app of ``uvicorn service.api:app``, an entry point: asked for the
first time, it tunes the process (``runtime.tune_server_process``, before torch is imported)
and builds the app from the environment's settings (a bad setting exits with one line).
Importing the package builds nothing, imports no torch, and changes nothing in the process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from .factory import create_app

__all__ = ["app", "create_app"]

_app: FastAPI | None = None


def __getattr__(name: str):
    if name == "create_app":
        from .factory import create_app

        return create_app
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    global _app
    if _app is None:
        from ..runtime import tune_server_process
        from ..settings import load_settings

        tune_server_process()
        from .factory import create_app

        _app = create_app(load_settings())
    return _app
