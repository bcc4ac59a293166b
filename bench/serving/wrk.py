"""The compiled load generator: ``wrk`` (Debian's package) with a Lua script that sends one
prepared request body, so that the generator costs the shared cores little (a Python generator
spends about 0.7 ms of CPU per request, half of what the server spends on a small one).

``wrk`` keeps ``concurrency`` connections busy (closed loop, like ``bench/serving/load.py``); its
latency histogram gives the percentiles, and its own CPU time comes from the kernel's account
of the finished child process.
"""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import subprocess
import tempfile
from pathlib import Path

from devkit.proc import cpu_seconds, machine_busy_seconds

from .load import Prepared
from .server import settle

SCRIPT = Path(__file__).with_name("wrk.lua")


def available() -> bool:
    return shutil.which("wrk") is not None


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    url: str, request: Prepared, concurrency: int, seconds: float, threads: int = 1
) -> dict:
    """Run wrk once; returns its JSON summary plus ``client_cpu_s`` (wrk's CPU time)."""
    with tempfile.NamedTemporaryFile(suffix=".body") as body:
        body.write(request.body)
        body.flush()
        env = os.environ | {
            "WRK_BODY": body.name,
            "WRK_PATH": request.path,
            "WRK_CONTENT_TYPE": request.content_type,
        }
        command = [
            "wrk",
            f"-t{min(threads, concurrency)}",
            f"-c{concurrency}",
            f"-d{max(1, math.ceil(seconds))}s",
            "--timeout",
            "60s",
            "-s",
            str(SCRIPT),
            url,
        ]
        cpu0 = _children_cpu()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        cpu1 = _children_cpu()
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    summary = json.loads(line.removeprefix("WRK_JSON "))
    summary["client_cpu_s"] = cpu1 - cpu0
    return summary


def wrk_load(
    url: str,
    request: Prepared,
    concurrency: int,
    seconds: float,
    server_pid: int,
    warmup_s: float = 1,
) -> dict:
    """One load with wrk after a warm-up, as a row of the report: throughput, latency
    percentiles, errors, and the CPU per request of the server and of wrk."""
    if warmup_s:
        run_wrk(url, request, concurrency, warmup_s)
    server0, (busy0, total0) = cpu_seconds(server_pid), machine_busy_seconds()
    s = run_wrk(url, request, concurrency, seconds)
    server1, (busy1, total1) = cpu_seconds(server_pid), machine_busy_seconds()
    settle(server_pid)
    done, elapsed = max(s["requests"], 1), s["duration_us"] / 1e6
    errors = s["status"] + s["connect"] + s["read"] + s["write"] + s["timeout"]
    return {
        "concurrency": concurrency,
        "requests": s["requests"],
        "errors": errors,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(s["requests"] / elapsed, 1),
        "images_per_s": round(s["requests"] * request.images / elapsed, 1),
        "p50_ms": round(s["p50_us"] / 1000, 2),
        "p95_ms": round(s["p95_us"] / 1000, 2),
        "p99_ms": round(s["p99_us"] / 1000, 2),
        "server_cpu_ms": round((server1 - server0) / done * 1000, 3),
        "client_cpu_ms": round(s["client_cpu_s"] / done * 1000, 3),
        "cpu_busy": f"{(busy1 - busy0) / (total1 - total0):.0%}",
        "generator": "wrk",
    }
