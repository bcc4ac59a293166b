"""How each worker of ``service/workers.py`` takes new connections: from the listening socket
that all of them share, one at a time, holding back while it has more open connections than
the least loaded other worker.

Left to uvicorn, the worker whose loop wakes first accepts every connection waiting, so a
client's few keep-alive connections often all land on one worker while the other cores idle,
and the service runs at that one worker's rate (docs/performance.md). A worker's loop can be
busy for several milliseconds under load (its GIL held by the thread that runs the batches,
its core shared with the client), so a worker over its share leaves a waiting connection to
the others for a while (``wait_s``); one taken no sooner is taken anyway, and a worker whose
loop did not run all that time is passed over until it runs again, so that no client waits
long on a worker that is stopped or stuck.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import multiprocessing
import select
import socket
from collections.abc import Callable

import uvicorn

log = logging.getLogger("unconv")

NOT_ACCEPTING = -1  # a worker's count while it is starting, draining or dead
# the file and memory limits: accepting again at once would only fail again (asyncio waits
# as long, asyncio.constants.ACCEPT_RETRY_DELAY)
_RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_RETRY_AFTER_S = 1.0
_TICK_S = 0.001  # how often a paused worker looks at the board again


class Board:
    """What the workers know of each other's accepting, in memory they share: per worker, its
    open connections (or ``NOT_ACCEPTING``), and how often its loop has found the listening
    socket readable, which shows that the loop is running."""

    def __init__(self, workers: int):
        self.open = multiprocessing.RawArray("i", [NOT_ACCEPTING] * workers)
        self.wakes = multiprocessing.RawArray("Q", workers)

    def retire(self, slot: int) -> None:
        """Leave no more connections to the worker in ``slot`` (it died)."""
        self.open[slot] = NOT_ACCEPTING


class BalancedAcceptor:
    """Accept connections from ``sock`` into this event loop while this worker holds no more
    open connections than the least loaded other worker that is accepting.

    A worker over its share leaves a waiting connection to the least loaded others for
    ``wait_s``. One whose loop has not looked at the listening socket in all that time is
    stopped or stuck (or very slow): it is passed over until its loop runs again, so that a
    stuck worker costs one wait, not one per connection.

    Parameters
    ----------
    sock : socket.socket
        The listening socket, shared with the other workers.
    board : Board
        The workers' shared counts.
    slot : int
        This worker's slot on the board.
    protocol_factory : callable
        Makes the protocol (uvicorn's HTTP protocol) for an accepted connection.
    open_connections : callable
        This worker's open connections, counted by its server.
    wait_s : float
        How long a worker over its share leaves a waiting connection to the others.
    """

    def __init__(
        self,
        sock: socket.socket,
        board: Board,
        slot: int,
        protocol_factory: Callable[[], asyncio.Protocol],
        open_connections: Callable[[], int],
        wait_s: float = 0.05,
    ):
        self._sock, self._board, self._slot = sock, board, slot
        self._protocol_factory, self._open_connections = protocol_factory, open_connections
        self._wait_s = wait_s
        self._connecting: set[asyncio.Task] = set()  # accepted, protocol not made yet
        self._timer: asyncio.TimerHandle | None = None
        self._paused_at = 0.0
        self._wakes_then: list[int] = []  # every worker's wakes when this one paused
        self._passed_over: dict[int, int] = {}  # slot: its wakes when it was found stuck
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Start accepting, in the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._sock.setblocking(False)
        self._waiting = select.poll()  # whether a connection waits, without taking it
        self._waiting.register(self._sock, select.POLLIN)
        self.publish()
        self._loop.add_reader(self._sock, self._on_readable)

    def stop(self) -> None:
        """Accept no more, and let the other workers take what is waiting."""
        if self._loop is None:
            return
        self._loop.remove_reader(self._sock)
        if self._timer is not None:
            self._timer.cancel()
        self._loop = None
        self._board.open[self._slot] = NOT_ACCEPTING

    def publish(self) -> None:
        """Write this worker's open connections for the others (its server calls this when
        one closes)."""
        if self._loop is not None:
            self._board.open[self._slot] = self._open_connections() + len(self._connecting)

    def less_loaded(self) -> list[int]:
        """The accepting others, not passed over, that hold the fewest open connections, if
        they hold fewer than this worker; else nothing."""
        board, counts = self._board, {}
        for slot, count in enumerate(board.open):
            stuck = self._passed_over.get(slot) == board.wakes[slot]
            if slot != self._slot and count >= 0 and not stuck:
                counts[slot] = count
        fewest = min(counts.values(), default=None)
        if fewest is None or board.open[self._slot] <= fewest:
            return []
        return [slot for slot, count in counts.items() if count == fewest]

    def _on_readable(self) -> None:
        self._board.wakes[self._slot] += 1
        if self.less_loaded():
            self._loop.remove_reader(self._sock)
            self._paused_at = self._loop.time()
            self._wakes_then = list(self._board.wakes)
            self._timer = self._loop.call_later(_TICK_S, self._tick)
        else:
            self._accept()

    def _tick(self) -> None:
        # paused: look again each tick, since the others' counts change without a word to us
        self._timer = None
        self._board.wakes[self._slot] += 1
        # nothing waits any more (another worker took it): the next connection wakes us
        others = self.less_loaded() if self._waiting.poll(0) else []
        if others and self._loop.time() - self._paused_at >= self._wait_s:
            for slot in others:
                if self._board.wakes[slot] == self._wakes_then[slot]:  # its loop never ran
                    self._passed_over[slot] = self._wakes_then[slot]
            others = self.less_loaded()
        if others:
            self._timer = self._loop.call_later(_TICK_S, self._tick)
        else:  # a connection still waiting makes the socket readable at once
            self._loop.add_reader(self._sock, self._on_readable)

    def _accept(self) -> None:
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another worker took it, or the client gave up
        except OSError as err:
            if err.errno not in _RESOURCE_ERRORS:
                raise
            log.error("cannot accept (%s); trying again in %.0f s", err, _RETRY_AFTER_S)
            self._loop.remove_reader(self._sock)
            self._timer = self._loop.call_later(_RETRY_AFTER_S, self._retry)
            return
        conn.setblocking(False)
        task = self._loop.create_task(self._connect(conn))
        self._connecting.add(task)
        self.publish()

    def _retry(self) -> None:
        self._timer = None
        self._loop.add_reader(self._sock, self._on_readable)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            loop = asyncio.get_running_loop()
            await loop.connect_accepted_socket(self._protocol_factory, conn)
        except OSError as err:  # the client reset it before the protocol was made
            log.debug("dropped an accepted connection: %s", err)
            conn.close()
        finally:
            self._connecting.discard(asyncio.current_task())
            self.publish()


class BalancedServer(uvicorn.Server):
    """uvicorn's server, taking its connections through a ``BalancedAcceptor`` (same
    parameters, less the two it makes itself)."""

    def __init__(self, config: uvicorn.Config, sock: socket.socket, board: Board, slot: int):
        super().__init__(config)
        self._balance = functools.partial(BalancedAcceptor, sock, board, slot)
        self.acceptor: BalancedAcceptor | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # the lifespan, and no listener of uvicorn's own
        counting = _publishing_on_close(self.config.http_protocol_class, self._published)
        factory = functools.partial(
            counting,
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )
        self.acceptor = self._balance(factory, lambda: len(self.server_state.connections))
        self.acceptor.start()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.acceptor is not None:
            self.acceptor.stop()
        await super().shutdown(sockets=None)

    def _published(self) -> None:
        if self.acceptor is not None:
            self.acceptor.publish()


def _publishing_on_close(protocol_class: type, publish: Callable[[], None]) -> type:
    class Publishing(protocol_class):
        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            publish()

    return Publishing
