"""The service as users start it: ``python -m service`` in a subprocess on a free port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def served_checkpoints(source: Path, target: Path, names=("ae", "vae", "cnn")) -> Path:
    """A checkpoint directory holding only the loadable ``names`` of ``source``."""
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        for suffix in (".json", ".safetensors"):
            shutil.copy(source / f"{name}{suffix}", target / f"{name}{suffix}")
    return target


@contextmanager
def running_service(
    checkpoint_dir: Path, log: Path, module: str = "service", **env: str
) -> Iterator[tuple]:
    """``python -m <module>`` (the service, or ``tests.fake_weights``: the service trusting
    conftest's random AlexNet weights); yields (process, base URL) once /readyz answers 200,
    and SIGTERM and wait at the end unless the process has exited."""
    port = free_port()
    environment = {
        **os.environ,
        "UNCONV_CHECKPOINT_DIR": str(checkpoint_dir),
        "UNCONV_PORT": str(port),
        "UNCONV_NETWORKS": "none",
    } | env
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", module], cwd=ROOT, env=environment, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(server, url, log)
        yield server, url
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _wait_ready(server: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"python -m service did not become ready:\n{log.read_text()[-3000:]}")


def child_processes(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (the workers of ``python -m service``)."""
    children = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "stat").read_text().rsplit(")", 1)[1].split()[
                1
            ] == str(pid):
                children.add(int(entry.name))
        except (FileNotFoundError, ProcessLookupError):
            pass  # exited meanwhile
    return children


@contextmanager
def stopped(pid: int):
    """Suspend a process (SIGSTOP) for the block: a stopped worker takes no connection."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
