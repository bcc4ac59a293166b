"""How a worker takes connections (service/accept.py), with acceptors in this test's event loop
sharing a real listening socket and a board: each takes a connection only while no other holds
fewer, a worker whose loop does not run is waited for once and then passed over, a worker
not accepting is not waited for at all, and one over its share looks at the board only while a
connection waits."""

import asyncio
import contextlib
import os
import socket

import pytest

from service.accept import NOT_ACCEPTING, BalancedAcceptor, Board


class _Connections(asyncio.Protocol):
    """Holds its connection open; the set stands for uvicorn's ``server_state.connections``."""

    def __init__(self, opened: set, closed):
        self.opened, self.closed = opened, closed

    def connection_made(self, transport):
        self.transport = transport
        self.opened.add(self)

    def connection_lost(self, exc):
        self.opened.discard(self)
        self.closed()


@pytest.fixture
def listener():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock


@contextlib.contextmanager
def _acceptor(listener: socket.socket, board: Board, slot: int, **kwargs):
    """A started acceptor on its own descriptor of ``listener`` (one loop watches a descriptor
    once), and the set of its open connections; all closed after the block."""
    opened: set = set()
    sock = socket.socket(fileno=os.dup(listener.fileno()))
    holder = {}

    def factory():
        return _Connections(opened, lambda: holder["acceptor"].publish())

    acceptor = BalancedAcceptor(sock, board, slot, factory, lambda: len(opened), **kwargs)
    holder["acceptor"] = acceptor
    acceptor.start()
    try:
        yield acceptor, opened
    finally:
        acceptor.stop()
        for connection in list(opened):
            connection.transport.close()
        sock.close()


@contextlib.contextmanager
def _clients():
    """The client sockets of a test, closed after it."""
    clients: list[socket.socket] = []
    try:
        yield clients
    finally:
        for client in clients:
            client.close()


async def _until(condition, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def _connect(listener: socket.socket) -> socket.socket:
    client = socket.socket()
    client.setblocking(False)
    await asyncio.get_running_loop().sock_connect(client, listener.getsockname())
    return client


async def test_connections_opened_one_by_one_alternate_between_two_workers(listener):
    board = Board(2)
    with (
        _acceptor(listener, board, 0) as (_, first),
        _acceptor(listener, board, 1) as (_, second),
        _clients() as clients,
    ):
        for count in range(1, 7):
            clients.append(await _connect(listener))
            await _until(lambda n=count: len(first) + len(second) == n)
            # whichever took it, neither ever holds two more than the other
            assert abs(len(first) - len(second)) <= 1
        assert (len(first), len(second)) == (3, 3)
        assert list(board.open) == [3, 3]
        for client in clients[:2]:
            client.close()
        await _until(lambda: sum(board.open) == 4)  # each close is written to the board
    assert list(board.open) == [NOT_ACCEPTING, NOT_ACCEPTING]


async def test_a_worker_whose_loop_does_not_run_is_waited_for_once_then_passed_over(listener):
    board = Board(2)
    board.open[1] = 0  # another worker, accepting and idle, whose loop never runs
    loop = asyncio.get_running_loop()
    with _acceptor(listener, board, 0, wait_s=0.3) as (acceptor, opened), _clients() as clients:
        clients.append(await _connect(listener))
        await _until(lambda: len(opened) == 1)  # no other holds fewer than none
        clients.append(await _connect(listener))
        start = loop.time()
        await asyncio.sleep(0.1)
        assert len(opened) == 1  # left to the other worker, which holds fewer
        await _until(lambda: len(opened) == 2)
        assert loop.time() - start >= 0.3
        assert acceptor.less_loaded() == []  # passed over from now on...
        clients.append(await _connect(listener))
        await _until(lambda: len(opened) == 3)
        board.wakes[1] += 1  # ...until its loop runs again
        assert acceptor.less_loaded() == [1]


async def test_a_worker_not_accepting_is_not_waited_for(listener):
    board = Board(3)
    board.open[1], board.open[2] = NOT_ACCEPTING, NOT_ACCEPTING  # starting, or draining
    # a wait would outlast the test's timeout
    with _acceptor(listener, board, 0, wait_s=3600) as (acceptor, opened), _clients() as clients:
        for count in range(1, 4):
            clients.append(await _connect(listener))
            await _until(lambda n=count: len(opened) == n)
        assert list(board.open) == [3, NOT_ACCEPTING, NOT_ACCEPTING]
        acceptor.stop()
        assert board.open[0] == NOT_ACCEPTING
        clients.append(await _connect(listener))  # waits in the backlog, for the others
        await asyncio.sleep(0.1)
        assert len(opened) == 3


async def test_a_worker_over_its_share_stops_looking_once_nothing_waits(listener):
    board = Board(2)
    board.open[1] = 0  # another worker, less loaded
    with _acceptor(listener, board, 0, wait_s=3600) as (_, opened), _clients() as clients:
        clients.append(await _connect(listener))
        await _until(lambda: len(opened) == 1)
        clients.append(await _connect(listener))
        await _until(lambda: board.wakes[0] >= 5)  # paused, looking at the board each tick
        taken, _ = listener.accept()  # as the other worker would
        with taken:
            await asyncio.sleep(0.05)
            looked = board.wakes[0]
            await asyncio.sleep(0.2)
            assert board.wakes[0] == looked  # no tick while nothing waits
            assert len(opened) == 1
