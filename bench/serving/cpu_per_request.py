"""``python -m bench.serving.cpu_per_request [LOAD[:CONCURRENCY] ...] [--requests N]
[--repeat R] [NAME=VALUE ...]``: the server's CPU time per request under a fixed-count load,
for finding where the time goes.

Throughput on a shared machine is noise; the CPU the server's processes spend per answered
request is not (much). One ``python -m service`` (two workers unless ``UNCONV_WORKERS`` is
given) on default-architecture, randomly initialised checkpoints; for each load a warm-up,
then wrk sends ``N`` requests at the concurrency (``WRK_REQUESTS`` in ``wrk.lua``), and the
utime + stime of the supervisor and its workers over that window (``/proc``) is divided by the
answers. Also printed: that CPU by role (the workers' event loops, their other threads) and the
mean batch from ``/metrics``. LOAD is a request of the benchmark (reconstruct_1,
reconstruct_64, generate_64, visualise_5, visualise_cnn); loads default to
``reconstruct_1:64`` and ``visualise_cnn:16``. NAME=VALUE pairs are environment variables for
the service, e.g. UNCONV_CONCURRENT_BATCHES=1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from devkit.proc import child_processes, cpu_seconds, threads_cpu_seconds

from .load import Prepared
from .scenarios import requests_to_send
from .server import batch_sizes, prepare_models, service, settle
from .wrk import run_wrk

MODEL = {
    "reconstruct_1": "ae",
    "reconstruct_64": "ae",
    "generate_64": "vae",
    "visualise_cnn": "cnn",
    "visualise_5": "alexnet",
}


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds of the service ``pid`` by role: its supervisor, and summed over its worker
    processes (``python -m service`` forks them) their event loops (each worker's main thread)
    and their other threads (inference, codecs, torch's)."""
    roles = {"supervisor": 0.0, "event loops": 0.0, "other threads": 0.0}
    for worker in [pid, *child_processes(pid)]:
        for thread, seconds in threads_cpu_seconds(worker).items():
            if worker == pid:
                role = "supervisor"
            else:
                role = "event loops" if thread == worker else "other threads"
            roles[role] += seconds
    return roles


def measure(url: str, pid: int, request: Prepared, concurrency: int, requests: int) -> dict:
    """One fixed-count load: server CPU ms per answered request, in all and by role."""
    settle(pid)
    cpu0, roles0 = cpu_seconds(pid), thread_cpu_seconds(pid)
    os.environ["WRK_REQUESTS"] = str(requests)
    try:
        s = run_wrk(url, request, concurrency, 600)
    finally:
        del os.environ["WRK_REQUESTS"]
    cpu1, roles1 = cpu_seconds(pid), thread_cpu_seconds(pid)
    done = max(s["requests"], 1)
    errors = s["status"] + s["connect"] + s["read"] + s["write"] + s["timeout"]
    return {
        "requests": s["requests"],
        "errors": errors,
        "server_cpu_ms": (cpu1 - cpu0) / done * 1000,
        **{f"{r}_ms": (roles1[r] - roles0[r]) / done * 1000 for r in roles1 if r != "supervisor"},
        "requests_per_s": s["requests"] / (s["duration_us"] / 1e6),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("loads", nargs="*", default=["reconstruct_1:64", "visualise_cnn:16"])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--checkpoints", type=Path, help="reuse prepared models here")
    args, rest = parser.parse_known_args(argv)
    settings = dict(s.split("=", 1) for s in rest if "=" in s)
    directory = args.checkpoints or Path(tempfile.mkdtemp())
    if not (directory / "checkpoints").is_dir():
        prepare_models(directory)
    env = {
        "UNCONV_CHECKPOINT_DIR": str(directory / "checkpoints"),
        "TORCH_HOME": str(directory / "torch"),
        "UNCONV_NETWORKS": "alexnet",
        "UNCONV_WORKERS": "2",
    } | settings
    prepared = requests_to_send()
    print(f"load average {os.getloadavg()[0]:.1f}; {env['UNCONV_WORKERS']} workers")
    with service(env) as (url, process, _):
        for spec in args.loads:
            name, _, concurrency = spec.partition(":")
            request, c = prepared[name], int(concurrency or 64)
            run_wrk(url, request, c, 2)  # warm-up
            rows = [
                one_round(url, process.pid, name, request, c, args.requests)
                for _ in range(args.repeat)
            ]
            cpu = [r["server_cpu_ms"] for r in rows]
            print(
                f"{name} c={c}: median {statistics.median(cpu):.3f} ms/request "
                f"(range {min(cpu):.3f}-{max(cpu):.3f})",
                flush=True,
            )
        settle(process.pid)


def one_round(
    url: str, pid: int, name: str, request: Prepared, concurrency: int, requests: int
) -> dict:
    """``measure`` with the mean batch of the round, printed."""
    before = batch_sizes(url, MODEL[name])
    row = measure(url, pid, request, concurrency, requests)
    after = batch_sizes(url, MODEL[name])
    passes = after["forward_passes"] - before["forward_passes"]
    images = (
        after["mean_batch_images"] * after["forward_passes"]
        - before["mean_batch_images"] * before["forward_passes"]
    )
    row["mean_batch"] = images / passes if passes else 0.0
    print(
        f"{name} c={concurrency}: {row['requests']} answered, {row['errors']} errors, "
        f"server CPU {row['server_cpu_ms']:.3f} ms/request (event loops "
        f"{row['event loops_ms']:.3f}, other threads {row['other threads_ms']:.3f}), "
        f"mean batch {row['mean_batch']:.1f}, {row['requests_per_s']:.0f} req/s",
        flush=True,
    )
    return row


if __name__ == "__main__":
    main()
