"""Start the service as users do (``python -m service``) and read what it reports."""

from __future__ import annotations

import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import torch
from torchvision import models

from service.models import MNIST_NORMALISATION, TORCHVISION_NETWORKS, save_checkpoint
from training.recipes import DEFAULT_MODELS, RECIPES

ROOT = Path(__file__).resolve().parents[2]


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
    weights = directory / "torch" / "hub" / "checkpoints"
    weights.mkdir(parents=True, exist_ok=True)
    path = weights / TORCHVISION_NETWORKS["alexnet"].weights_path.name
    if not path.exists():
        torch.save(models.alexnet().state_dict(), path)
    return {
        "UNCONV_CHECKPOINT_DIR": str(checkpoints),
        "TORCH_HOME": str(directory / "torch"),
        "UNCONV_NETWORKS": "alexnet",
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def service(env: dict[str, str], command: list[str] | None = None):
    """Run the service; yields (url, process, seconds from start to ready)."""
    port = free_port()
    env = {**os.environ, **env, "UNCONV_PORT": str(port), "UNCONV_LOG_LEVEL": "warning"}
    # python -m service, trusting the random AlexNet weights of prepare_models in place of the
    # published file (whose hash the service checks)
    command = command or [sys.executable, "-m", "tests.fake_weights"]
    with tempfile.TemporaryFile("w+") as log:  # the server's errors, shown if it never gets ready
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log
        )
        try:
            yield f"http://127.0.0.1:{port}", process, _ready(port, process, log)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _ready(port: int, process: subprocess.Popen, log) -> float:
    try:
        return wait_ready(f"http://127.0.0.1:{port}", process, "/readyz")
    except RuntimeError as error:
        log.seek(0)
        raise RuntimeError(f"{error}; its last words:\n{log.read()[-3000:]}") from None


def wait_ready(url: str, process: subprocess.Popen, path: str, limit_s: float = 120) -> float:
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


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process in MB, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    current = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024
    peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024
    return current, peak


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and all its descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue  # exited meanwhile
            stats[int(entry.name)] = fields
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        if current in stats:
            total += int(stats[current][11]) + int(stats[current][12])
        todo += children.get(current, [])
    return total / tick


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


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]  # idle and iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values) - idle) / tick, sum(values) / tick


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
