"""Latency at low load, idle and with the machine's other core busy, against the naive peer.

On a shared node another process often holds a core; a forward pass split over two OpenMP
threads then waits for the one that was preempted. A CPU-bound process pinned to the last core
(``taskset``) stands in for that neighbour. The service and the naive FastAPI peer
(``bench/serving/peer_naive.py``) run side by side and the loads alternate between them in
rounds, so that drift in the machine's speed hits both alike; each figure is the median over
the rounds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager

from devkit.server import ROOT, free_port, wait_ready

from .load import Prepared
from .scenarios import load, merge_rounds
from .server import paused, service

# concurrency -> how many times longer its loads run: the naive peer answers a photo at c=64
# only after about 64 forward passes of 60 ms each
LEVELS = {
    "reconstruct_1": {1: 1, 16: 1, 64: 1},
    "visualise_5": {1: 1, 16: 2, 64: 4},
    "generate_64": {1: 1},
}
# every route at c=1 on an idle machine too
IDLE = ("reconstruct_1", "visualise_5", "generate_64")


@contextmanager
def busy_core():
    """A CPU-bound process pinned to the last core while the block runs."""
    core = (os.cpu_count() or 1) - 1
    spin = [sys.executable, "-c", "while True: pass"]
    command = ["taskset", "-c", str(core), *spin] if shutil.which("taskset") else spin
    process = subprocess.Popen(command)
    try:
        yield core
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def naive_peer(env: dict[str, str]):
    """The naive peer on a free port; yields (url, process)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "bench.serving.peer_naive",
        str(port),
        env["UNCONV_CHECKPOINT_DIR"],
    ]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, "/readyz")
        yield url, process
    finally:
        process.terminate()
        process.wait(30)


def side_by_side(
    targets: dict[str, tuple[str, int]], request: Prepared, concurrency: int, seconds, rounds
) -> dict[str, dict]:
    """Alternate ``rounds`` loads between the servers in ``targets`` (name -> (url, pid)),
    the order swapped every round, the others stopped meanwhile (``paused``)."""
    rows: dict[str, list[dict]] = {name: [] for name in targets}
    for i in range(rounds):
        for name, (url, pid) in list(targets.items())[:: 1 - 2 * (i % 2)]:
            with paused(p for n, (_, p) in targets.items() if n != name):
                row = load(url, request, concurrency, seconds, pid, warmup_s=int(i == 0))
            rows[name].append(row)
    return {name: merge_rounds(r) for name, r in rows.items()}


def low_load_latency(env: dict, requests: dict, seconds: float, rounds: int) -> dict:
    """For /reconstruct (one digit), /visualise (AlexNet layer 5, a photo) and /generate (n=64):
    service and naive peer at c=1 on the idle machine (``idle``), then at each concurrency of
    ``LEVELS`` with one core busy."""
    print("latency, idle then with one core busy: service and naive peer side by side", flush=True)
    results: dict = {"idle": {}}
    with service(env) as (url, process, _), naive_peer(env) as (naive_url, naive):
        targets = {"service": (url, process.pid), "naive": (naive_url, naive.pid)}
        for key in IDLE:
            pair = side_by_side(targets, requests[key], 1, seconds, rounds)
            results["idle"][key] = {"1": pair}
            print(f"  idle {key} c=1: {pair}", flush=True)
        with busy_core() as core:
            results["busy_core"] = core
            for key, levels in LEVELS.items():
                results[key] = {}
                for concurrency, longer in levels.items():
                    pair = side_by_side(
                        targets,
                        requests[key],
                        concurrency,
                        seconds * longer,
                        max(1, rounds // longer),
                    )
                    results[key][str(concurrency)] = pair
                    print(f"  {key} c={concurrency}: {pair}", flush=True)
    return results
