"""What the routes of both protocols (the native routes and the Open Inference Protocol) use to
serve a request from the engine: the app's engine, and work that is given up when the client
leaves before its answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

from ..engine import Engine, ErrorCode, RequestError

T = TypeVar("T")


def engine_of(request: Request) -> Engine:
    """The engine of the app serving ``request`` (built in the app's lifespan)."""
    return request.app.state.engine


async def while_connected(request: Request, work: Awaitable[T]) -> T:
    """Await ``work`` (``engine.submit(...)``, or several gathered), given up when the client
    disconnects first.

    Raises
    ------
    RequestError
        ``client_closed_request`` (499) when the client left; the batcher drops a job that had
        not run yet.
    """
    task = asyncio.current_task()
    watcher = asyncio.create_task(_cancel_on_disconnect(request, task))
    try:
        return await work
    except asyncio.CancelledError:
        if not watcher.done():
            raise  # cancelled by the server, not by the client leaving
        # the cancellation is handled here, so later timeouts in this task must not see it
        task.uncancel()
        raise RequestError(ErrorCode.CLIENT_CLOSED_REQUEST, "the client disconnected") from None
    finally:
        watcher.cancel()


async def _cancel_on_disconnect(request: Request, task: asyncio.Task) -> None:
    """Cancel ``task`` when the client disconnects (the body has been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    task.cancel()
