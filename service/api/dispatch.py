"""One path for the model routes' requests, in every configuration.

The model routes (``POST /visualise``, ``/reconstruct``, ``/generate``) carry the service's
traffic. ``ModelRoutes``, the innermost middleware, serves each of their requests: it checks
the API key when one is set (UNCONV_API_KEY), calls the route's handler with the request alone
and sends its answer; an exception is answered by the app's handler for it, as Starlette's
exception middleware would. What it skips is machinery these handlers do not use: FastAPI's
route matching through the included routers, its dependency solving, and the exit stacks and
exception wrappers it sets up around each request (docs/performance.md measures the share of
the event loop they take).

FastAPI's router declares the same routes, for the OpenAPI document (the body, the answers and,
when a key is set, the key) and to answer 405 to another method on their paths; it never
serves their POSTs.

A route joins the path by one entry: decorate its handler, ``async def handler(request) ->
Response``, with ``model_routes.post(path, ...)`` (``routes.py``), giving what FastAPI's
``router.post`` takes for the document, and ``body=`` the pydantic model of a JSON body, which
the handler reads with ``read_json``.
"""

from __future__ import annotations

import hashlib
import inspect
import secrets
from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import APIRouter, Request, Security
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, SecretStr, ValidationError
from starlette._utils import get_route_path
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..engine.errors import ErrorCode, RequestError, invalid_parameters
from .errors import describe_validation_error

Handler = Callable[[Request], Awaitable[Response]]
Body = TypeVar("Body", bound=BaseModel)

API_KEY_HEADER = "X-API-Key"
_api_key_header = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="Needed when UNCONV_API_KEY is set"
)


def check_api_key(expected: SecretStr, given: str | None) -> None:
    """Raise ``unauthorized`` (401) unless ``given`` is the key."""
    # digests of equal length: the time taken tells nothing of the key's length or content
    wanted = hashlib.sha256(expected.get_secret_value().encode()).digest()
    digest = hashlib.sha256((given or "").encode()).digest()
    if not secrets.compare_digest(digest, wanted) or not given:
        raise RequestError(ErrorCode.UNAUTHORIZED, f"missing or wrong {API_KEY_HEADER} header")


async def require_api_key(request: Request, key: str | None = Security(_api_key_header)) -> None:
    """The key check of the routes FastAPI's router serves (a dependency, so that the OpenAPI
    document asks for the key)."""
    check_api_key(request.app.state.settings.api_key, key)


class ModelRouteTable:
    """The model routes: their handlers by path, and ``router``, their declarations."""

    def __init__(self) -> None:
        self.router = APIRouter(tags=["models"])
        self.handlers: dict[str, Handler] = {}

    def post(self, path: str, body: type[BaseModel] | None = None, **declaration):
        """Register the decorated handler for ``POST path``; ``declaration`` as FastAPI's
        ``router.post`` takes it, for the document."""

        def register(handler: Handler) -> Handler:
            self.handlers[path] = handler
            declaration.setdefault("response_class", Response)
            self.router.post(path, **declaration)(_declared(handler, body))
            return handler

        return register


def _declared(handler: Handler, body: type[BaseModel] | None) -> Callable:
    """An endpoint for FastAPI to describe: ``handler``'s name and docstring, and ``body`` as
    its JSON body. ``ModelRoutes`` serves the route; were FastAPI to, it would call ``handler``."""

    async def endpoint(request: Request, **_) -> Response:
        return await handler(request)

    parameters = [inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request)]
    if body is not None:
        parameters.append(
            inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=body)
        )
    endpoint.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    endpoint.__name__ = endpoint.__qualname__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


async def read_json(request: Request, model: type[Body]) -> Body:
    """The body, ``application/json`` (or a ``+json`` type), as ``model``.

    Raises
    ------
    RequestError
        ``invalid_parameters`` (422) for another content type, an empty body, one that does not
        parse, or one that does not validate (naming the field).
    """
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        given = media or "a body without a content type"
        raise invalid_parameters(f"body: expected application/json, not {given}")
    raw = await request.body()
    if not raw:
        raise invalid_parameters("body: Field required")
    try:
        return model.model_validate_json(raw)
    except ValidationError as err:
        raise invalid_parameters(describe_validation_error(err)) from None


class ModelRoutes:
    """Serves the POST requests of ``table``'s routes, checking ``api_key`` when there is one;
    everything else goes on to the app's exception middleware and router."""

    def __init__(self, app: ASGIApp, table: ModelRouteTable, api_key: SecretStr | None):
        self.app, self.api_key = app, api_key
        declared = {route.path: route for route in table.router.routes}
        self.routes = {path: (declared[path], h) for path, h in table.handlers.items()}
        self._handlers: tuple[dict, dict] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        entry = None
        if scope["type"] == "http" and scope["method"] == "POST":
            entry = self.routes.get(get_route_path(scope))
        if entry is None:
            return await self.app(scope, receive, send)
        route, handle = entry
        app = scope["app"]
        scope.setdefault("router", app.router)
        scope["endpoint"], scope["path_params"], scope["route"] = route.endpoint, {}, route
        request = Request(scope, receive, send)
        try:
            if self.api_key is not None:
                check_api_key(self.api_key, request.headers.get(API_KEY_HEADER))
            response = await handle(request)
        except Exception as exc:
            handler = self._handler(app, exc)
            if handler is None:
                raise  # a bug: the server error middleware answers 500
            response = await handler(request, exc)
            exc.__traceback__ = None  # as Starlette's handling does, for reused instances
        await response(scope, receive, send)

    def _handler(self, app, exc: Exception):
        """The app's handler for ``exc``, found as Starlette's exception middleware finds it
        (by status for an ``HTTPException``, else by class); None for ``Exception``'s."""
        if self._handlers is None:
            handlers = {
                k: v for k, v in app.exception_handlers.items() if k not in (500, Exception)
            }
            self._handlers = (
                {k: v for k, v in handlers.items() if not isinstance(k, int)},
                {k: v for k, v in handlers.items() if isinstance(k, int)},
            )
        by_class, by_status = self._handlers
        if isinstance(exc, HTTPException) and exc.status_code in by_status:
            return by_status[exc.status_code]
        for cls in type(exc).__mro__:
            if cls in by_class:
                return by_class[cls]
        return None
