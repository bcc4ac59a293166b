"""Pure ASGI middleware: request metrics, the upload size limit, following the other workers'
model loads, and the busy routes served without the router."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from starlette._utils import get_route_path
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..engine.errors import ErrorCode
from ..engine.metrics import Metrics
from .errors import error_response

Handler = Callable[[Request], Awaitable[Response | None]]


class MetricsMiddleware:
    """Counts and times every HTTP request by route template, method and status, except
    those whose route template is in ``uncounted`` (the web page's files)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, uncounted: frozenset[str] = frozenset()):
        self.app, self.metrics, self.uncounted = app, metrics, uncounted
        # the labelled children by (route, method, status): prometheus_client's ``labels``
        # checks its arguments and takes a lock on every call
        self._children: dict[tuple[str, str, int], tuple] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            if route not in self.uncounted:
                key = (route, scope["method"], status)
                children = self._children.get(key)
                if children is None:
                    children = self._children[key] = (
                        self.metrics.requests.labels(route, key[1], str(status)),
                        self.metrics.latency.labels(route, key[1]),
                    )
                children[0].inc()
                children[1].observe(time.perf_counter() - started)


class BodyLimitMiddleware:
    """Answers 413 for a body over ``max_bytes``: at once from Content-Length, or as it streams."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def _detail(self) -> str:
        return (
            f"the request body exceeds UNCONV_MAX_UPLOAD_BYTES={self.max_bytes} bytes; "
            "send smaller or fewer images"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            response = error_response(
                ErrorCode.PAYLOAD_TOO_LARGE, self._detail(), path=scope["path"]
            )
            return await response(scope, receive, send)
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, self._detail())
            return message

        await self.app(scope, limited_receive, send)


class FollowWorkersMiddleware:
    """Before a request, loads or unloads what another worker process has loaded or unloaded
    (``Engine.follow``), so that no answer comes from a model another worker has replaced.
    The probes and /metrics never wait for it."""

    def __init__(self, app: ASGIApp, unhindered: frozenset[str]):
        self.app, self.unhindered = app, unhindered

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in self.unhindered:
            engine = getattr(scope["app"].state, "engine", None)
            if engine is not None:
                await engine.follow()
        await self.app(scope, receive, send)


class DirectRoutes:
    """Serves the busy routes' POST requests straight from the middleware stack (``routes``:
    path -> the route and a handler of the request alone): the handler's answer is sent, or an
    exception is answered by the app's handler for it, as Starlette's exception middleware
    does. A handler that returns None leaves the request to the router, its body replayed.
    Everything else goes on to the app's exception middleware and router.

    What is skipped is machinery these handlers do not use: FastAPI's route matching through
    included routers, its dependency solving, three ``AsyncExitStack``s and two exception
    wrappers per request, about a fifth of the event loop's time (docs/performance.md, round
    3). The routes stay declared on the router, for the OpenAPI document, for any other
    method, and for the requests their handler leaves (a JSON body that does not validate, so
    that its error is FastAPI's own).
    """

    def __init__(self, app: ASGIApp, routes: dict[str, tuple[BaseRoute, Handler]]):
        self.app, self.routes = app, routes
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
            response = await handle(request)
        except Exception as exc:
            handler = self._handler(app, exc)
            if handler is None:
                raise  # a bug: the server error middleware answers 500
            response = await handler(request, exc)
            exc.__traceback__ = None  # as Starlette's handling does, for reused instances
        if response is None:
            return await self.app(scope, _replay(await request.body(), receive), send)
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


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` that gives the body already read first."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed
