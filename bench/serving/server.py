"""The service as users start it (devkit.server), with default-architecture models, and what
it reports."""

from __future__ import annotations

import os
import platform
import re
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import torch

from devkit.fake_weights import write_alexnet_weights
from devkit.proc import cpu_seconds, process_tree
from devkit.server import running_service
from service.models import MNIST_NORMALISATION, save_checkpoint
from training.recipes import DEFAULT_MODELS, RECIPES


def prepare_models(directory: Path) -> dict[str, str]:
    """Default-architecture checkpoints and AlexNet weights, randomly initialised.

    Throughput does not depend on the weights' values, and this needs no training or network.
    Returns the environment that points the service at them.
    """
    torch.manual_seed(0)
    checkpoints = directory / "checkpoints"
    for name in DEFAULT_MODELS:
        recipe = RECIPES[name]
        save_checkpoint(
            checkpoints / name,
            recipe.config.build(recipe.assumption),
            recipe.config,
            MNIST_NORMALISATION,
            recipe.assumption,
        )
    write_alexnet_weights(directory / "torch")
    return {
        "UNCONV_CHECKPOINT_DIR": str(checkpoints),
        "TORCH_HOME": str(directory / "torch"),
        "UNCONV_NETWORKS": "alexnet",
    }


@contextmanager
def service(env: dict[str, str]):
    """Run the service as users do; yields (url, process, seconds from start to ready)."""
    env = env | {"UNCONV_LOG_LEVEL": "warning"}
    # python -m service, trusting the random AlexNet weights of prepare_models in place of the
    # published file (whose hash the service checks)
    with running_service(env, module="devkit.fake_weights") as served:
        yield served.url, served.process, served.ready_s


@contextmanager
def paused(pids):
    """Stop the servers ``pids`` (each with its workers) while the block runs: a server left
    idle beside a measured one is not idle everywhere (LitServe's inference workers poll their
    queues, 10% of a core each), and its spinning would count against whichever is measured."""
    stopped = [p for pid in pids for p in process_tree(pid)]
    for p in stopped:
        os.kill(p, signal.SIGSTOP)
    try:
        yield
    finally:
        for p in reversed(stopped):
            os.kill(p, signal.SIGCONT)


def settle(pid: int, limit_s: float = 30) -> None:
    """Wait until the server has answered what a finished load left in flight (its CPU time
    grows by less than a twentieth of a core): else that work would run during the next load,
    on whichever server it measures."""
    deadline = time.monotonic() + limit_s
    before = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = cpu_seconds(pid)
        if now - before < 0.005:
            return
        before = now


def batch_sizes(url: str, model: str) -> dict[str, float]:
    """Mean items and requests per forward pass so far, from /metrics."""
    text = httpx.get(url + "/metrics").text

    def value(metric: str) -> float:
        match = re.search(rf'^{metric}{{model="{model}"}} ([0-9.e+]+)$', text, re.M)
        return float(match.group(1)) if match else 0.0

    passes = value("unconv_batch_size_count")
    return {
        "forward_passes": passes,
        "mean_batch_images": value("unconv_batch_size_sum") / passes if passes else 0.0,
        "mean_batch_requests": value("unconv_batch_requests_sum") / passes if passes else 0.0,
    }


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_at_start": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
