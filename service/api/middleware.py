"""Pure ASGI middleware: request metrics, the upload size limit and following the other
workers' model loads (the model routes' own is ``dispatch.ModelRoutes``)."""

from __future__ import annotations

import time

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..engine.errors import ErrorCode
from ..engine.metrics import Metrics
from .errors import error_response


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
