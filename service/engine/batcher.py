"""Dynamic batching: gather concurrent requests for one model into one forward pass.

The batcher knows nothing of HTTP or of any endpoint. A request is a *payload* of ``size`` items
(images) under a *key*; requests that share a key can share a forward pass. One worker task per
batcher takes the oldest waiting request and adds the other waiting requests with the same key
while they fit in its share of the waiting items (``1 / concurrency`` of them, at most
``max_batch_size``), optionally waits up to ``max_delay_s`` for more (then up to
``max_batch_size``), and runs ``predict(key, payloads)`` in an executor thread, off the event
loop. Up to ``concurrency`` batches run at once; while they do, new requests queue up, so
batches grow with load and a lone request never waits for company.

Each batch has an ID (``<pid>.<n>``): every request it served names it in its log lines
(``service.logs``), and when tracing is on its span links to each request's span
(``service.tracing``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from .. import logs, tracing

Predict = Callable[[Hashable, list[Any]], Sequence[Any]]

log = logging.getLogger("unconv")

_batch_numbers = itertools.count(1)


class QueueFull(Exception):
    """Too many items are waiting; the caller should retry later."""


class ShuttingDown(Exception):
    """The batcher no longer accepts requests."""


class DeadlineExceeded(Exception):
    """The request's deadline passed before it was answered."""


class BatchObserver:
    """Hooks for metrics; the default does nothing."""

    def batch(self, items: int, requests: int, seconds: float) -> None: ...
    def queue_wait(self, seconds: float) -> None: ...
    def depth(self, items: int) -> None: ...


@dataclass(eq=False)
class _Request:
    key: Hashable
    payload: Any
    size: int
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)
    dropped: bool = False
    # the submitting task's request (its log lines) and route span (None when not tracing)
    log: logs.RequestContext | None = field(default_factory=logs.current)
    trace: Any = field(default_factory=tracing.capture)


def take_batch(queue: deque[_Request], max_items: int) -> list[_Request]:
    """
    Remove from ``queue`` the oldest live request and every later one with its key, in order,
    while they fit in ``max_items`` (the first request always goes, whatever its size).

    Dropped requests met on the way are discarded; the rest keep their order.
    """
    batch: list[_Request] = []
    kept: deque[_Request] = deque()
    items = 0
    while queue:
        request = queue.popleft()
        if request.dropped:
            continue
        if not batch or (request.key == batch[0].key and items + request.size <= max_items):
            batch.append(request)
            items += request.size
            if items >= max_items:
                break
        else:
            kept.append(request)
    kept.extend(queue)
    queue.clear()
    queue.extend(kept)
    return batch


class Batcher:
    """
    Dynamic batcher for one model.

    Parameters
    ----------
    predict : callable
        ``predict(key, payloads) -> results``, one result per payload in order; a result that
        is an exception fails only its own request. It runs in ``executor`` and may raise;
        then the batch is split in halves and retried, so that an error (a bad input, CUDA
        running out of memory) reaches only the requests that cause it.
    max_batch_size : int
        Most items in one call of ``predict`` (a larger single request runs alone).
    max_delay_s : float
        Once a batch has begun to form and is not full, how long to wait for more.
    max_queue : int
        Most items waiting; ``submit`` raises ``QueueFull`` beyond it.
    executor : Executor
        Where ``predict`` runs.
    concurrency : int, optional
        Most batches running at once. A batch is taken only when one may start, so the
        requests that arrive meanwhile join it, and takes at most its share of the waiting
        items (``1 / concurrency``), so that a burst is spread over several batches instead
        of running as one while the others take the stragglers one by one.
    observer : BatchObserver, optional
        Receives batch sizes, queue waits and queue depth.
    name : str, optional
        The batches' span name when tracing (``batch <model>``).
    """

    def __init__(
        self,
        predict: Predict,
        *,
        max_batch_size: int,
        max_delay_s: float,
        max_queue: int,
        executor: Executor,
        concurrency: int = 1,
        observer: BatchObserver | None = None,
        name: str = "batch",
    ):
        self.predict = predict
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.max_queue = max_queue
        self.executor = executor
        self.observer = observer or BatchObserver()
        self._queue: deque[_Request] = deque()
        self._waiting = 0  # items in the queue that are not dropped
        self._wakeup = asyncio.Event()
        self._closing = False
        self._worker: asyncio.Task | None = None
        self.concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._running: set[asyncio.Task] = set()

    @property
    def waiting(self) -> int:
        """Items waiting for a forward pass."""
        return self._waiting

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="batcher")

    async def submit(
        self, payload: Any, size: int = 1, key: Hashable = None, timeout: float | None = None
    ) -> Any:
        """
        Queue one request and wait for its result.

        Raises
        ------
        ShuttingDown, QueueFull
            The request was not accepted.
        DeadlineExceeded
            ``timeout`` seconds passed first; the request is dropped if it has not run yet.
        Exception
            Whatever ``predict`` raised for this request.
        """
        if self._closing:
            raise ShuttingDown("the service is shutting down")
        if self._waiting + size > self.max_queue and self._waiting:
            raise QueueFull(f"{self._waiting} items are already waiting (limit {self.max_queue})")
        self.start()
        loop = asyncio.get_running_loop()
        request = _Request(key, payload, size, loop.create_future())
        self._queue.append(request)
        self._waiting += size
        self.observer.depth(self._waiting)
        self._wakeup.set()
        # the future itself is awaited and the deadline is a timer that fails it: no shield,
        # no wait_for, whose extra futures and callbacks would cost every request
        timer = None
        if timeout is not None:
            timer = loop.call_later(timeout, self._expire, request, timeout)
        try:
            return await request.future
        except asyncio.CancelledError:
            self._drop(request)  # the client went away
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _expire(self, request: _Request, timeout: float) -> None:
        if not request.future.done():
            self._drop(request)
            request.future.set_exception(DeadlineExceeded(f"no answer within {timeout:g} s"))

    def _drop(self, request: _Request) -> None:
        if not request.dropped and request in self._queue:
            self._waiting -= request.size
            self.observer.depth(self._waiting)
        request.dropped = True

    async def close(self) -> None:
        """Refuse new requests, answer every accepted one, then stop the worker."""
        self._closing = True
        self._wakeup.set()
        if self._worker is not None:
            await self._worker

    async def _run(self) -> None:
        while True:
            await self._slots.acquire()
            batch = await self._next_batch()
            if batch is None:
                break
            task = asyncio.create_task(self._execute(batch), name="batch")
            self._running.add(task)
            task.add_done_callback(self._finished)
        await asyncio.gather(*self._running)  # closing: answer what is running

    async def _next_batch(self) -> list[_Request] | None:
        """The next batch to run; None once closing and nothing is left."""
        while True:
            await self._wakeup.wait()
            share = max(1, -(-self._waiting // self.concurrency))
            batch = self._take(min(self.max_batch_size, share))
            if batch:
                if self.max_delay_s > 0 and self._items(batch) < self.max_batch_size:
                    batch = await self._fill(batch)
                return batch
            self._wakeup.clear()
            if self._closing:
                return None

    def _finished(self, task: asyncio.Task) -> None:
        self._running.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("a batch failed outside predict", exc_info=task.exception())

    def _items(self, batch: list[_Request]) -> int:
        return sum(r.size for r in batch)

    def _take(self, max_items: int) -> list[_Request]:
        batch = take_batch(self._queue, max_items)
        self._recount()
        return batch

    def _recount(self) -> None:
        self._waiting = sum(r.size for r in self._queue if not r.dropped)
        self.observer.depth(self._waiting)

    async def _fill(self, batch: list[_Request]) -> list[_Request]:
        """Add the waiting requests with the batch's key (beyond its share: a delay asks for
        full batches), then wait up to ``max_delay_s`` for more."""
        deadline = time.perf_counter() + self.max_delay_s
        while True:
            same_key = deque(r for r in self._queue if r.key == batch[0].key and not r.dropped)
            room = self.max_batch_size - self._items(batch)
            more = take_batch(same_key, room) if same_key and same_key[0].size <= room else []
            for request in more:
                self._queue.remove(request)
            batch += more
            self._recount()
            left = deadline - time.perf_counter()
            if self._items(batch) >= self.max_batch_size or left <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), left)
            except TimeoutError:
                break
        self._wakeup.set()  # whatever is left gets looked at next
        return batch

    async def _execute(self, batch: list[_Request]) -> None:
        batch = [r for r in batch if not r.dropped]
        if not batch:
            return
        now = time.perf_counter()
        for request in batch:
            self.observer.queue_wait(now - request.enqueued)

        batch_id = f"{os.getpid()}.{next(_batch_numbers)}"

        def run() -> tuple[list[_Request], Sequence[Any]]:
            # the executor may be busy with other models: look again for requests that were
            # dropped (deadline, disconnect) while this batch waited for the thread
            live = [r for r in batch if not r.dropped]
            if not live:
                return live, []
            requests = [(r.trace, r.enqueued) for r in live]
            attributes = {"unconv.batch": batch_id, "unconv.batch.requests": len(live)}
            with tracing.batch_span(self.name, requests, attributes):
                return live, self.predict(live[0].key, [r.payload for r in live])

        loop = asyncio.get_running_loop()
        try:
            live, results = await loop.run_in_executor(self.executor, run)
        except Exception as err:
            live = [r for r in batch if not r.dropped]
            _name(live, batch_id)
            if len(live) <= 1:
                for request in live:
                    _settle(request, error=err)
                return
            half = len(live) // 2
            await self._execute(live[:half])
            await self._execute(live[half:])
            return
        if live:
            self.observer.batch(self._items(live), len(live), time.perf_counter() - now)
        _name(live, batch_id)
        for request, result in zip(live, results, strict=True):
            if isinstance(result, Exception):
                _settle(request, error=result)
            else:
                _settle(request, result=result)


def _name(requests: list[_Request], batch_id: str) -> None:
    """Name the batch in each request's log lines (the last one tried, after a split)."""
    for request in requests:
        if request.log is not None:
            request.log.batch = batch_id


def _settle(request: _Request, result: Any = None, error: BaseException | None = None) -> None:
    if request.future.done() or request.dropped:
        return
    if error is not None:
        request.future.set_exception(error)
    else:
        request.future.set_result(result)
