"""The HTTP layer: routes, the OpenAPI contract, forms, schemas, errors, middleware and the
page, over the engine (``service.engine``), which knows nothing of HTTP.

``service.api:app`` is the app of ``uvicorn service.api:app``, built from the environment's
settings when first asked for (a bad setting exits with one line); importing the package
builds nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .factory import create_app

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["app", "create_app"]

_app: FastAPI | None = None


def __getattr__(name: str):
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    global _app
    if _app is None:
        from ..settings import load_settings

        _app = create_app(load_settings())
    return _app
