"""The service as the tests start it (devkit.server): a directory of checkpoints, no network."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import devkit.server
from devkit.proc import child_processes
from devkit.server import ROOT, free_port

__all__ = ["ROOT", "child_processes", "free_port", "running_service", "served_checkpoints"]


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
    """``python -m <module>`` (the service, or ``devkit.fake_weights``: the service trusting
    conftest's random AlexNet weights) serving ``checkpoint_dir`` and no torchvision network
    unless ``env`` says so; yields (process, base URL) once /readyz answers 200."""
    env = {"UNCONV_CHECKPOINT_DIR": str(checkpoint_dir), "UNCONV_NETWORKS": "none"} | env
    with devkit.server.running_service(env, log, module) as served:
        yield served.process, served.url


@contextmanager
def stopped(pid: int):
    """Suspend a process (SIGSTOP) for the block: a stopped worker takes no connection."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
