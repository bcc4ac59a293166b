"""Each request observed once, around everything else the app does: its request ID (the
caller's ``X-Request-ID`` when sane, else a new one) answered in ``X-Request-ID`` on every
response, errors included; its log context, so that every line logged while it is served names
it (``service.logs``); its route span when tracing (``service.tracing``); and one access-log
line when it is answered: method, path, route, status, duration and the batch it rode in.

The observer wraps the whole middleware stack, Starlette's server-error middleware included,
so that the generic 500 of a bug carries the ID too. Nothing of the request's body, query or
other headers is logged.
"""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import logs, tracing

access_log = logging.getLogger("unconv.access")

_HEADER = logs.REQUEST_ID_HEADER.encode()


class RequestObserver:
    """Pure ASGI: request IDs, log context, route span and access log of every HTTP request."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        headers = scope["headers"]
        given = next((value for key, value in headers if key == _HEADER), None)
        context = logs.RequestContext(logs.request_id(given))
        answered = (_HEADER, context.request_id.encode())
        status = 500  # unless a response starts

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), answered]
            await send(message)

        method = scope["method"]
        attributes = {"http.request.method": method, "unconv.request_id": context.request_id}
        with logs.serving(context), tracing.route_span(method, headers, attributes) as span:
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                context.route = getattr(scope.get("route"), "path", None)
                _access(context, method, scope["path"], status, started)
                if span is not None:
                    span.update_name(f"{method} {context.route or scope['path']}")
                    span.set_attribute("http.route", context.route or "")
                    tracing.end_route(span, status)


def _access(context: logs.RequestContext, method: str, path: str, status: int, started: float):
    if access_log.isEnabledFor(logging.INFO):
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        access_log.info(
            "%s %s %d",
            method,
            path,
            status,
            extra={"method": method, "path": path, "status": status, "duration_ms": duration_ms},
        )


class ObservedFastAPI(FastAPI):
    """FastAPI whose middleware stack, the outermost layer included, runs inside a
    ``RequestObserver``."""

    def build_middleware_stack(self) -> ASGIApp:
        return RequestObserver(super().build_middleware_stack())
