"""``python -m bench`` (``make bench``): the serving benchmark, in one run on one machine.

Measures the honest ceiling (plain PyTorch + Pillow, best batch size and split of the cores),
its best configurations again beside the loads whose goal is a share of it, the service
started as users start it (batching on, and off with UNCONV_MAX_BATCH_SIZE=1) under the
compiled load generator ``wrk`` at several concurrencies, the same AE reconstruction
served by LitServe, the Python generator as a cross-check, low-load latency against a naive
FastAPI peer with one core busy, cold start and memory growth, and a GPU section where CUDA is
present; writes docs/benchmarks.md and docs/benchmarks.json. Models have the default
architectures with random weights: throughput does not depend on the weights' values.

``--quick`` (or ``UNCONV_BENCH_QUICK=1``) is a smoke run of a minute or two: every step, short
loads, figures not worth reporting.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devkit.proc import rss_mb
from devkit.server import ROOT, free_port, wait_ready
from service.runtime import keep_freed_memory

from . import wrk
from .attribution import attribution_versus_captum
from .goals import beside_medians
from .gpu import gpu_section
from .latency import low_load_latency
from .load import Prepared
from .report import save, write_report
from .scenarios import (
    SERVICE_LOADS,
    httpx_load,
    load,
    merge_rounds,
    requests_to_send,
    with_batches,
)
from .server import machine, paused, prepare_models, service


@dataclass(frozen=True)
class Plan:
    """How long each step runs: the full run, or a quick smoke run."""

    seconds: float = 10
    ceiling_s: float = 1.0
    latency_s: float = 3
    latency_rounds: int = 3
    memory_requests: int = 10_000
    rounds: int = 5  # batching on and off alternate, each load split in this many rounds


QUICK = Plan(
    seconds=1, ceiling_s=0.05, latency_s=1, latency_rounds=1, memory_requests=300, rounds=1
)


def _one_round(url: str, pid: int, key: str, request: Prepared, plan: Plan, c: int, i: int) -> dict:
    model = SERVICE_LOADS[key][0]
    seconds = plan.seconds / plan.rounds
    return with_batches(url, model, lambda: load(url, request, c, seconds, pid, int(i == 0)))


def paired_scenarios(env: dict, requests: dict, plan: Plan) -> dict:
    """Every load against the service with batching on and off (UNCONV_MAX_BATCH_SIZE=1).

    Both servers run at once (the one not measured stopped, ``paused``) and each load
    alternates between them in ``plan.rounds`` rounds (the order swapped every round), so that
    drift in the machine's speed (it has neighbours) hits both alike; each row holds the
    medians over the rounds.
    """
    print("service, batching on and off side by side", flush=True)
    off_env = env | {"UNCONV_MAX_BATCH_SIZE": "1"}
    with service(env) as (on_url, on, _), service(off_env) as (off_url, off, _):
        servers = {"batching_on": (on_url, on.pid), "batching_off": (off_url, off.pid)}
        results = {mode: {} for mode in servers}
        for key, (_, levels) in SERVICE_LOADS.items():
            for mode in servers:
                results[mode][key] = []
            for c in levels:
                rounds = {mode: [] for mode in servers}
                for i in range(plan.rounds):
                    for mode, (url, pid) in list(servers.items())[:: 1 - 2 * (i % 2)]:
                        with paused(p for m, (_, p) in servers.items() if m != mode):
                            row = _one_round(url, pid, key, requests[key], plan, c, i)
                        rounds[mode].append(row)
                for mode, rows in rounds.items():
                    results[mode][key].append(merge_rounds(rows))
                    print(f"  {mode} {key} c={c}: {results[mode][key][-1]}", flush=True)
        on_results = results["batching_on"]
        row = httpx_load(on_url, requests["reconstruct_1"], 64, plan.seconds, on.pid)
        on_results["httpx_reconstruct_1_c64"] = row
        print(f"  httpx cross-check c=64: {row}", flush=True)
        rate = _at(on_results["reconstruct_1"], 16)["requests_per_s"]
        on_results["memory"] = memory_growth(on_url, on.pid, requests["reconstruct_1"], plan, rate)
    return results


def _at(rows: list[dict], concurrency: int) -> dict:
    return next(r for r in rows if r["concurrency"] == concurrency)


def memory_growth(url: str, pid: int, request: Prepared, plan: Plan, rate: float) -> dict:
    """RSS before and after at least ``plan.memory_requests`` more requests at concurrency 16
    (the server is warm already); the load runs long enough at the rate measured before."""
    before, _ = rss_mb(pid)
    seconds = math.ceil(2 * plan.memory_requests / max(rate, 1.0))
    row = load(url, request, 16, seconds, pid, warmup_s=0)
    after, peak = rss_mb(pid)
    print(f"  memory: {before:.0f} -> {after:.0f} MB over {row['requests']} requests", flush=True)
    return {
        "requests": row["requests"],
        "errors": row["errors"],
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(after, 1),
        "rss_peak_mb": round(peak, 1),
    }


@contextmanager
def litserve_peer(env: dict, workers: int):
    """The LitServe peer with ``workers`` inference workers on a free port; yields (url, pid)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "bench.serving.peer_litserve",
        str(port),
        env["UNCONV_CHECKPOINT_DIR"],
        str(workers),
    ]
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
        yield url, process.pid
    finally:
        os.killpg(process.pid, 15)  # LitServe runs worker processes of its own
        process.wait(30)


def litserve_scenarios(env: dict, requests: dict, plan: Plan) -> dict:
    """LitServe at one and at two inference workers against the service (batching on), all
    three up at once, the two not measured stopped (``paused``). ``versus``: /reconstruct one
    image at c=64 in ``plan.rounds`` rounds, each measuring the service and both peers back to
    back (the order reversed every other round), so that each ratio compares neighbouring
    loads. ``rows``: the peer with one worker at each concurrency, and the httpx cross-check."""
    print("LitServe at 1 and 2 inference workers, and the service", flush=True)
    seconds = plan.seconds / plan.rounds
    with (
        service(env) as (url, process, _),
        litserve_peer(env, 1) as (one_url, one_pid),
        litserve_peer(env, 2) as (two_url, two_pid),
    ):
        targets = {
            "service": (url, process.pid, requests["reconstruct_1"]),
            "litserve_1": (one_url, one_pid, requests["litserve"]),
            "litserve_2": (two_url, two_pid, requests["litserve"]),
        }
        rounds = []
        for i in range(plan.rounds):
            row = {}
            for name, (where, pid, request) in list(targets.items())[:: 1 - 2 * (i % 2)]:
                with paused(p for n, (_, p, _) in targets.items() if n != name):
                    row[name] = load(where, request, 64, seconds, pid, warmup_s=int(i == 0))
            rounds.append(row)
            summary = {name: (x["requests_per_s"], x["p99_ms"]) for name, x in row.items()}
            print(f"  round {i + 1}, c=64 (req/s, p99 ms): {summary}", flush=True)
        rows = []
        with paused([process.pid, two_pid]):
            for concurrency in SERVICE_LOADS["reconstruct_1"][1]:
                rows.append(load(one_url, requests["litserve"], concurrency, plan.seconds, one_pid))
                print(f"  litserve c={concurrency}: {rows[-1]}", flush=True)
            cross = httpx_load(one_url, requests["litserve"], 64, plan.seconds, one_pid)
        print(f"  litserve httpx cross-check c=64: {cross}", flush=True)
    return {"rows": rows, "httpx_c64": cross, "versus": {"concurrency": 64, "rounds": rounds}}


def cold_start(env: dict) -> float:
    """Seconds from process start to /readyz = 200, with the default checkpoints and AlexNet."""
    with service(env) as (_, _, ready_s):
        return round(ready_s, 2)


def measure_ceiling(plan: Plan) -> dict:
    print("ceiling (plain PyTorch + Pillow, best batch size and split)", flush=True)
    command = [sys.executable, "-m", "bench.serving.ceiling", str(plan.ceiling_s)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    results = json.loads(done.stdout)
    print(f"  {json.dumps(results)[:400]}...", flush=True)
    return results


# the loads whose goal is a share of the ceiling: load -> (concurrency, the ceiling's work)
BESIDE = {
    "reconstruct_1": (64, "reconstruct"),
    "visualise_cnn": (16, "cnn_4"),
    "generate_64": (4, "generate_64"),
    "visualise_5": (16, "alexnet_5"),
}


def ceiling_beside(env: dict, requests: dict, plan: Plan, ceiling: dict) -> dict:
    """Each load of ``BESIDE`` and the ceiling's best configuration of its work measured back
    to back in ``plan.rounds`` rounds (the order reversed every other round), so that each
    share of the ceiling compares neighbouring runs: the machine's speed drifts by more than
    the goals' margins between the ceiling's sweep and a load minutes later."""
    print("the ceiling's best configurations beside the service", flush=True)
    best = {"reconstruct": ceiling["reconstruct"], "generate_64": ceiling["generate_64"]}
    best |= ceiling["visualise"]
    seconds = plan.seconds / plan.rounds
    command = [sys.executable, "-m", "bench.serving.ceiling", "serve"]
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}
    with service(env) as (url, process, _), subprocess.Popen(command, cwd=ROOT, **pipes) as sweep:

        def ceiling_rate(work: str) -> float:
            config = best[work]["codec"]
            ask = {"work": work, "seconds": seconds} | {
                k: config[k] for k in ("batch_size", "split")
            }
            sweep.stdin.write(json.dumps(ask) + "\n")
            sweep.stdin.flush()
            return json.loads(sweep.stdout.readline())["images_per_s"]

        if sweep.stdout.readline().strip() != "ready":
            raise RuntimeError("the ceiling's process did not start")
        results = {}
        for key, (concurrency, work) in BESIDE.items():
            rounds = []
            for i in range(plan.rounds):
                pair = {}
                for name in ("service", "ceiling")[:: 1 - 2 * (i % 2)]:
                    if name == "ceiling":
                        pair[name] = ceiling_rate(work)
                    else:
                        row = load(
                            url, requests[key], concurrency, seconds, process.pid, int(i == 0)
                        )
                        pair[name] = row["images_per_s"]
                rounds.append(pair)
            print(f"  {key} c={concurrency} (service, ceiling img/s): {rounds}", flush=True)
            results[key] = {"concurrency": concurrency, "work": work, "rounds": rounds}
            results[key]["medians"] = beside_medians(rounds)
        sweep.stdin.close()
    return results


def run(plan: Plan, quick: bool) -> dict:
    keep_freed_memory()  # as the service does, so the ceiling is not slowed by page faults
    requests = requests_to_send()
    with tempfile.TemporaryDirectory() as tmp:
        env = prepare_models(Path(tmp))
        return {
            "machine": machine(),
            "command": "python -m bench" + (" --quick" if quick else ""),
            "quick": quick,
            "generator": "wrk" if wrk.available() else "httpx",
            "ceiling": (ceiling := measure_ceiling(plan)),
            "ceiling_beside": ceiling_beside(env, requests, plan, ceiling),
            "cold_start_seconds": cold_start(env),
            **paired_scenarios(env, requests, plan),
            "litserve": litserve_scenarios(env, requests, plan),
            "latency": low_load_latency(env, requests, plan.latency_s, plan.latency_rounds),
            "attribution": attribution_versus_captum(env, plan.seconds),
            "gpu": gpu_section(env, requests, plan.seconds),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description="Serving benchmark; writes docs/benchmarks.*")
    parser.add_argument("--quick", action="store_true", help="a short smoke run of every step")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    quick = args.quick or os.environ.get("UNCONV_BENCH_QUICK", "") not in ("", "0")
    results = run(QUICK if quick else Plan(), quick)
    save(results, args.out, "benchmarks", write_report)


if __name__ == "__main__":
    main()
