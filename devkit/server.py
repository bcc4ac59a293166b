"""The service as users start it, ``python -m service``, in a subprocess on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Served:
    """A running server: its process, base URL and seconds from start to ready."""

    process: subprocess.Popen
    url: str
    ready_s: float


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_service(
    env: dict[str, str],
    log: Path | None = None,
    module: str = "service",
    args: tuple[str, ...] = (),
    limit_s: float = 120,
) -> Iterator[Served]:
    """
    ``python -m <module> <args>`` from the repository root on a free loopback port.

    Parameters
    ----------
    env : variables over this process's environment (``UNCONV_PORT`` is set to the port)
    log : file for the server's stdout and stderr (a temporary one when None); its tail is in
        the error when the server never gets ready
    module, args : what runs; ``{port}`` in ``args`` becomes the port (``uvicorn`` needs it)
    limit_s : how long /readyz may take to answer 200

    Yields the ``Served`` server once /readyz answers 200; SIGTERM and a wait at the end (then
    SIGKILL), unless it has exited.
    """
    port = free_port()
    environment = os.environ | {"UNCONV_PORT": str(port)} | env
    command = [sys.executable, "-m", module, *(a.format(port=port) for a in args)]
    with tempfile.TemporaryDirectory() as scratch:
        log = log or Path(scratch) / "server.log"
        with log.open("wb") as out:
            process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=out, stderr=out)
        url = f"http://127.0.0.1:{port}"
        try:
            try:
                ready_s = wait_ready(url, process, "/readyz", limit_s)
            except RuntimeError as error:
                raise RuntimeError(f"{error}; its last words:\n{log.read_text()[-3000:]}") from None
            yield Served(process, url, ready_s)
        finally:
            _stop(process)


def wait_ready(url: str, process: subprocess.Popen, path: str, limit_s: float = 120) -> float:
    """Seconds until ``url + path`` answers 200; RuntimeError if ``process`` exits first or
    ``limit_s`` pass."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url}{path} not ready after {limit_s} s")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
