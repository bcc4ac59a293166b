"""Several server processes on one port: what ``python -m service`` runs, one per core on the
CPU and four sharing a GPU. Read this first; ``accept.py`` and ``engine/generations.py`` are
its two helpers.

- **Who forks whom.** The supervisor (this module's ``serve``, in the process ``python -m
  service`` started) builds the app once, binds the port, then forks the workers, so that
  they start as fast as one process. It serves no request itself: it waits for its workers
  and replaces those that exit.
- **Who accepts.** Every worker accepts from the one listening socket they share, and takes a
  new connection only while it holds no more than the least loaded other worker
  (``accept.py``), so that a client's few connections are spread over the cores. Each worker
  loads its own models, batches its own requests and answers on its own connections.
- **What they share.** Each app is given a ``Peers`` (``service/engine/peers.py``): readiness
  flags (``/readyz`` answers 200 only once every worker has loaded its models), the metrics
  directory (``/metrics`` sums every worker's), and the table of models loaded or unloaded
  through ``/v2/repository`` (``engine/generations.py``), which each other worker applies
  before its next request.
- **What a worker's death costs.** Its open connections and the requests on them; the others
  keep serving, and the supervisor forks a replacement, which loads its models before it
  accepts. A worker that dies before it was ready stops the service instead, since its
  replacement would die the same way.

One process takes its HTTP parsing, batching and codec work in turns at one GIL, which is why
there are several (docs/performance.md). Forking needs a process that has not started CUDA or
OpenMP threads yet: the supervisor runs no tensor op and asks NVML, not the CUDA runtime,
whether there is a GPU (``__main__``); each worker starts CUDA for itself, so several workers
can share a GPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

from .accept import BalancedServer, Board

if TYPE_CHECKING:  # imported in serve(): the engine imports prometheus_client
    from .engine.peers import Peers

log = logging.getLogger("unconv")

STARTUP_FAILURE = 3  # uvicorn's exit status when the app does not start


def serve(configure: Callable[[Peers], uvicorn.Config], workers: int) -> int:
    """Serve the app of ``configure(peers)`` on ``workers`` processes; the exit status."""
    if workers == 1:
        from .engine.peers import Peers

        server = uvicorn.Server(configure(Peers()))
        server.run()
        return 0 if server.started else STARTUP_FAILURE
    with (
        tempfile.TemporaryDirectory(prefix="unconv-metrics-") as metrics_dir,
        tempfile.TemporaryDirectory(prefix="unconv-repository-") as repository_dir,
    ):
        # before the app's import: prometheus_client picks its storage as it is imported
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        from .engine.generations import Generations
        from .engine.peers import Peers

        ready = multiprocessing.RawArray("b", workers)  # a flag per worker, 1 once it is ready
        peers = Peers(Generations(Path(repository_dir)), Path(metrics_dir), ready)
        config = configure(peers)
        config.load()
        sock = config.bind_socket()
        sock.listen(config.backlog)
        return _Supervisor(config, sock, peers).run()


class _Supervisor:
    def __init__(self, config: uvicorn.Config, sock, peers: Peers):
        self.config, self.sock, self.peers = config, sock, peers
        self.ready = peers.ready
        self.board = Board(len(self.ready))  # each worker's open connections (service/accept.py)
        self.slots: dict[int, int] = {}  # pid: slot
        self.stopping = False
        self.status = 0
        # imported here: prometheus_client must not load before PROMETHEUS_MULTIPROC_DIR is set
        from .engine.metrics import worker_restarts

        self.restarts = worker_restarts()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for slot in range(len(self.ready)):
            self._start(slot)
        log.info("started %d workers", len(self.ready))
        while self.slots:
            pid, wait_status = os.wait()  # a signal runs its handler, then the wait goes on
            if pid in self.slots:
                self._reap(pid, os.waitstatus_to_exitcode(wait_status))
        return self.status

    def _reap(self, pid: int, code: int) -> None:
        # imported here: prometheus_client must not load before PROMETHEUS_MULTIPROC_DIR is set
        from prometheus_client import multiprocess

        slot = self.slots.pop(pid)
        was_ready, self.ready[slot] = self.ready[slot], 0
        self.board.retire(slot)  # the others no longer leave it connections
        # its queue gauge no longer counts
        multiprocess.mark_process_dead(pid, str(self.peers.metrics_dir))
        if self.stopping:
            return
        if not was_ready:
            log.error("worker %d exited with status %d while starting; stopping", pid, code)
            self.status = code if code > 0 else STARTUP_FAILURE
            self._stop()
        else:
            log.warning("worker %d exited with status %d; starting another", pid, code)
            self.restarts.inc()
            self._start(slot)

    def _stop(self, signum: int | None = None, frame=None) -> None:
        # the first signal drains the workers; a second one (Ctrl-C again) stops them at once,
        # as uvicorn does for a second SIGINT
        again = self.stopping and signum is not None
        self.stopping = True
        for pid in list(self.slots):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT if again else signal.SIGTERM)

    def _start(self, slot: int) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid:
            self.slots[pid] = slot
            if self.stopping:  # a signal came during the fork, before the worker was known
                os.kill(pid, signal.SIGTERM)
            return
        code = 1
        try:
            self.peers.slot = slot
            _become_worker(parent)
            server = BalancedServer(self.config, self.sock, self.board, slot)
            server.run()
            code = 0 if server.started else STARTUP_FAILURE
        except SystemExit as err:
            code = err.code if isinstance(err.code, int) else 1
        except BaseException:
            log.exception("worker %d failed", os.getpid())
        finally:
            logging.shutdown()
            os._exit(code)


def _become_worker(parent: int) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # uvicorn installs its own
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # out of the terminal's process group: Ctrl-C reaches the supervisor alone, which stops
    # each worker once
    os.setpgid(0, 0)
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: drain and exit if the supervisor dies
    if os.getppid() != parent:  # it died before prctl
        raise SystemExit(1)
