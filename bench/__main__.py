"""``python -m bench`` (``make bench``): the serving benchmark, in one run on one machine.

Measures the plain-PyTorch ceiling, the service started as users start it (batching on, and off
with UNCONV_MAX_BATCH_SIZE=1) under a bounded async httpx load at several concurrencies, the
same AE reconstruction served by LitServe, cold start and memory growth; writes
docs/benchmarks.md and docs/benchmarks.json. Models have the default architectures with random
weights: throughput does not depend on the weights' values.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import uvloop

from service.runtime import keep_freed_memory
from tests.helpers import png_bytes

from . import ceiling
from .load import Prepared, run_load
from .report import write_report
from .server import (
    batch_sizes,
    cpu_seconds,
    free_port,
    machine_busy_seconds,
    prepare_models,
    rss_mb,
    service,
    wait_ready,
)

CONCURRENCY = (1, 16, 64)


def _run(coroutine):
    """Run the load generator on uvloop: it shares the cores with the server under test."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def _load(url: str, request: Prepared, concurrency: int, seconds: float, server_pid: int) -> dict:
    """One load, and where the CPU went in its measured window: server and generator per
    request, and how busy the whole machine was."""

    def probe() -> tuple[float, float, tuple[float, float]]:
        own = resource.getrusage(resource.RUSAGE_SELF)
        return cpu_seconds(server_pid), own.ru_utime + own.ru_stime, machine_busy_seconds()

    result = _run(run_load(url, request, concurrency, 10**6, seconds, probe=probe))
    (server0, client0, (busy0, total0)), (server1, client1, (busy1, total1)) = result.probes
    done = max(result.requests, 1)
    row = result.summary()
    row["server_cpu_ms"] = round((server1 - server0) / done * 1000, 3)
    row["client_cpu_ms"] = round((client1 - client0) / done * 1000, 3)
    row["cpu_busy"] = f"{(busy1 - busy0) / (total1 - total0):.0%}"
    return row


def _scenario(
    url: str, pid: int, model: str, request: Prepared, levels, seconds: float
) -> list[dict]:
    rows = []
    for concurrency in levels:
        before = batch_sizes(url, model)
        row = _load(url, request, concurrency, seconds, pid)
        after = batch_sizes(url, model)
        passes = after["forward_passes"] - before["forward_passes"]
        images = (
            after["mean_batch_images"] * after["forward_passes"]
            - before["mean_batch_images"] * before["forward_passes"]
        )
        row["mean_batch_images"] = round(images / passes, 2) if passes else 0.0
        rows.append(row)
        print(f"  {model} c={concurrency}: {row}", flush=True)
    return rows


def requests_to_send() -> dict[str, Prepared]:
    digit, photo = png_bytes(seed=1), png_bytes((320, 240), "RGB", seed=2, fmt="JPEG")
    return {
        "reconstruct_1": Prepared.multipart("/reconstruct", [digit], {"model": "ae"}),
        "reconstruct_64": Prepared.multipart("/reconstruct", [digit] * 64, {"model": "ae"}),
        "generate_64": Prepared.json("/generate", '{"n": 64, "seed": 1}', images=64),
        "visualise_5": Prepared.multipart("/visualise", [photo], {"layer": "5"}),
        "litserve": Prepared.json(
            "/reconstruct", json.dumps({"image": base64.b64encode(digit).decode()}), images=1
        ),
    }


def serve_scenarios(env: dict, requests: dict, seconds: float, batching: bool) -> dict:
    mode = "on" if batching else "off"
    env = env | ({} if batching else {"UNCONV_MAX_BATCH_SIZE": "1"})
    print(f"service, batching {mode}", flush=True)
    with service(env) as (url, process, ready_s):
        pid = process.pid
        results = {
            "ready_seconds": round(ready_s, 2),
            "reconstruct_1": _scenario(
                url, pid, "ae", requests["reconstruct_1"], CONCURRENCY, seconds
            ),
            "reconstruct_64": _scenario(
                url, pid, "ae", requests["reconstruct_64"], (1, 4), seconds
            ),
            "generate_64": _scenario(url, pid, "vae", requests["generate_64"], (1, 4), seconds),
            "visualise_5": _scenario(
                url, pid, "alexnet", requests["visualise_5"], CONCURRENCY, seconds
            ),
        }
        if batching:
            results["memory"] = memory_growth(url, process.pid, requests["reconstruct_1"])
    return results


def memory_growth(url: str, pid: int, request: Prepared, count: int = 10_000) -> dict:
    """RSS before and after ``count`` more requests (the server is warm already)."""
    before, _ = rss_mb(pid)
    result = _run(run_load(url, request, 16, count, 120, warmup=0))
    after, peak = rss_mb(pid)
    print(f"  memory: {before:.0f} -> {after:.0f} MB over {result.requests} requests", flush=True)
    return {
        "requests": result.requests,
        "errors": result.errors,
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(after, 1),
        "rss_peak_mb": round(peak, 1),
    }


def paired_latency(env: dict, requests: dict, seconds: float = 1.0, rounds: int = 7) -> dict:
    """Median p50 at concurrency 1 with batching on and off. Both servers run side by side and
    the loads alternate, so that drift in the machine's speed (it has neighbours) hits both
    alike; a difference of a millisecond is smaller than that drift between separate runs."""
    print("concurrency 1, batching on and off side by side", flush=True)
    off = env | {"UNCONV_MAX_BATCH_SIZE": "1"}
    results = {}
    with service(env) as (on_url, _, _), service(off) as (off_url, _, _):
        for key in ("reconstruct_1", "visualise_5"):
            p50 = {"on": [], "off": []}
            for _ in range(rounds):
                for mode, url in (("on", on_url), ("off", off_url)):
                    load = _run(run_load(url, requests[key], 1, 10**6, seconds, warmup=5))
                    p50[mode].append(load.percentile(50))
            results[key] = {
                f"p50_ms_{mode}": round(statistics.median(values), 3)
                for mode, values in p50.items()
            }
            print(f"  {key}: {results[key]}", flush=True)
    return results


def litserve_scenarios(env: dict, request: Prepared, seconds: float) -> list[dict]:
    print("LitServe", flush=True)
    port = free_port()
    command = [sys.executable, "-m", "bench.peer_litserve", str(port), env["UNCONV_CHECKPOINT_DIR"]]
    process = subprocess.Popen(
        command,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, "/health")
        rows = []
        for concurrency in CONCURRENCY:
            rows.append(_load(url, request, concurrency, seconds, process.pid))
            print(f"  litserve c={concurrency}: {rows[-1]}", flush=True)
        return rows
    finally:
        os.killpg(process.pid, 15)  # LitServe runs worker processes of its own
        process.wait(30)


def cold_start(env: dict) -> float:
    """Seconds from process start to /readyz = 200, with the default checkpoints and AlexNet."""
    with service(env) as (_, _, ready_s):
        return round(ready_s, 2)


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Serving benchmark; writes docs/benchmarks.*")
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each load")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    keep_freed_memory()  # as the service does, so the ceiling is not slowed by page faults
    requests = requests_to_send()
    with tempfile.TemporaryDirectory() as tmp:
        env = prepare_models(Path(tmp))
        print("ceiling (plain PyTorch)", flush=True)
        results = {
            "machine": machine(),
            "command": "python -m bench",
            "ceiling": {
                "reconstruct": ceiling.reconstruct(png_bytes(seed=1)),
                "generate_64": ceiling.generate(64),
                "visualise": ceiling.visualise(png_bytes((320, 240), "RGB", seed=2, fmt="JPEG")),
            },
            "cold_start_seconds": cold_start(env),
            "batching_on": serve_scenarios(env, requests, args.seconds, batching=True),
            "batching_off": serve_scenarios(env, requests, args.seconds, batching=False),
            "litserve": litserve_scenarios(env, requests["litserve"], args.seconds),
            "paired_c1": paired_latency(env, requests),
        }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmarks.json").write_text(json.dumps(results, indent=2) + "\n")
    write_report(results, args.out / "benchmarks.md")
    print(f"wrote {args.out / 'benchmarks.md'} and {args.out / 'benchmarks.json'}")


if __name__ == "__main__":
    main()
