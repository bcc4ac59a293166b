"""``make stress``: a long schemathesis run, a soak of mixed load, and a dependency audit.

1. a soak: at least 20,000 requests over every endpoint on loopback, bounded in count and time,
   with the server's resident memory and open file descriptors sampled as it goes; any answer
   but 200 is an error;
2. schemathesis, every check, many more examples than CI's run (tests/service/api/
   test_contract.py), with the API key set and without;
3. ``pip-audit`` of every pinned package (requirements/dev.txt holds all of serve.txt),
   bench/serving/audit.py.

Prints what it measured as JSON and writes it to bench/results/stress.json; exits 1 when a
goal is missed (an error, RSS growth of 50 MB or more, a descriptor leak, a failure found, a
known vulnerability). A goal that cannot be checked on this machine (the audit, where the
vulnerability feed is out of reach) is ``null``, with the reason beside it, and fails nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.serving.audit import run_audit
from bench.serving.load import Prepared
from bench.serving.server import prepare_models, service
from devkit.images import png_bytes
from devkit.proc import open_files, rss_mb
from devkit.server import ROOT

SOAK_REQUESTS = 20_000
SOAK_LIMIT_S = 900
CONCURRENCY = 16
SAMPLE_EVERY = 1_000
FUZZ_EXAMPLES = 300
RSS_GROWTH_LIMIT_MB = 50


def mixed_requests() -> list[tuple[Prepared, int]]:
    """(request, weight): every route, the model routes in each output format."""
    digit, photo = png_bytes(seed=1), png_bytes((256, 256), "RGB", seed=2)
    get = [Prepared("GET", path, b"", "text/plain") for path in ("/healthz", "/readyz")]
    get += [Prepared("GET", path, b"", "text/plain") for path in ("/models", "/metrics")]
    return [
        *((request, 2) for request in get),
        (Prepared.json("/generate", '{"n": 4, "seed": 1}', 4), 10),
        (Prepared.json("/generate", '{"n": 1, "format": "json"}', 1), 6),
        (Prepared.json("/generate", '{"n": 2, "format": "npy"}', 2), 6),
        (Prepared.multipart("/reconstruct", [digit], {"model": "vae"}), 10),
        (Prepared.multipart("/reconstruct", [digit] * 3, {"model": "ae", "format": "json"}), 6),
        (Prepared.multipart("/visualise", [digit], {"network": "cnn", "layer": "3"}), 6),
        (
            Prepared.multipart(
                "/visualise",
                [digit],
                {"network": "cnn", "layer": "1", "k": "4", "channel": "2", "format": "json"},
            ),
            3,
        ),
        (Prepared.multipart("/visualise", [photo], {"network": "alexnet", "layer": "2"}), 1),
    ]


async def soak(url: str, pid: int) -> dict:
    """Send SOAK_REQUESTS mixed requests from CONCURRENCY clients; sample RSS and descriptors."""
    choices = mixed_requests()
    plan = random.Random(7).choices(
        [r for r, _ in choices], weights=[w for _, w in choices], k=SOAK_REQUESTS
    )
    statuses: dict[str, int] = {}
    samples: list[dict] = []
    done = 0
    deadline = time.monotonic() + SOAK_LIMIT_S

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done
        while plan and time.monotonic() < deadline:
            request = plan.pop()
            response = await client.request(
                request.method,
                request.path,
                content=request.body or None,
                headers={"content-type": request.content_type},
            )
            key = f"{request.method} {request.path} {response.status_code}"
            statuses[key] = statuses.get(key, 0) + 1
            done += 1
            if done % SAMPLE_EVERY == 0:
                samples.append({"requests": done, "rss_mb": rss_mb(pid)[0], "fds": open_files(pid)})

    started = time.perf_counter()
    limits = httpx.Limits(max_connections=1)
    clients = [
        httpx.AsyncClient(base_url=url, timeout=60, limits=limits) for _ in range(CONCURRENCY)
    ]
    try:
        await asyncio.gather(*(worker(c) for c in clients))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    seconds = time.perf_counter() - started
    await asyncio.sleep(1)  # connections closed: what is left open now is a leak
    after = {"rss_mb": rss_mb(pid)[0], "fds": open_files(pid)}
    errors = sum(n for key, n in statuses.items() if not key.endswith(" 200"))
    warm = samples[1] if len(samples) > 1 else samples[0]  # after the first allocations settle
    return {
        "requests": done,
        "seconds": round(seconds, 1),
        "requests_per_s": round(done / seconds, 1),
        "errors": errors,
        "statuses": dict(sorted(statuses.items())),
        "rss_mb_after_warmup": round(warm["rss_mb"], 1),
        "rss_mb_end": round(samples[-1]["rss_mb"], 1),
        "rss_growth_mb": round(samples[-1]["rss_mb"] - warm["rss_mb"], 1),
        "peak_rss_mb": round(rss_mb(pid)[1], 1),
        "fds_during": sorted({s["fds"] for s in samples}),
        "fds_idle_before": None,
        "fds_idle_after": after["fds"],
        "samples": samples,
    }


def fuzz(url: str, key: str | None) -> dict:
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json"),
        *("--checks", "all", "--max-examples", str(FUZZ_EXAMPLES), "--seed", "1"),
        *(("--header", f"X-API-Key: {key}") if key else ()),
        *("--generation-database", "none"),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return {"command": " ".join(command[2:]), "exit": done.returncode, "summary": lines[-8:]}


def goals(result: dict) -> dict[str, bool | None]:
    """Each goal: met, missed, or None where it cannot be checked on this machine."""
    soak_ = result["soak"]
    return {
        "soak: at least 20,000 requests": soak_["requests"] >= SOAK_REQUESTS,
        "soak: no error": soak_["errors"] == 0,
        f"soak: RSS growth < {RSS_GROWTH_LIMIT_MB} MB": soak_["rss_growth_mb"]
        < RSS_GROWTH_LIMIT_MB,
        # a few descriptors open lazily on the first requests (thread pools, the codec)
        "soak: no descriptor leak": soak_["fds_idle_after"] <= soak_["fds_idle_before"] + 4
        and max(soak_["fds_during"]) <= min(soak_["fds_during"]) + CONCURRENCY,
        **{
            f"fuzz ({configuration}): no failure": run["exit"] == 0
            for configuration, run in result["fuzz"].items()
        },
        "audit: no known vulnerability in what could be audited": result["audit"]["passed"],
    }


def main() -> None:
    key = "stress-key"
    with tempfile.TemporaryDirectory() as directory:
        env = prepare_models(Path(directory)) | {"UNCONV_API_KEY": ""}
        with service(env) as (url, process, _):
            idle = open_files(process.pid)
            result = {"soak": asyncio.run(soak(url, process.pid))}
            result["soak"]["fds_idle_before"] = idle
        result["fuzz"] = {}
        for configuration, api_key in (("API key set", key), ("no API key", None)):
            fuzzed = env | {"UNCONV_API_KEY": api_key or "", "UNCONV_NETWORKS": "none"}
            with service(fuzzed) as (url, _, _):
                result["fuzz"][configuration] = fuzz(url, api_key)
    result["audit"] = run_audit(ROOT / "requirements" / "dev.txt")
    result["goals"] = goals(result)
    out = ROOT / "bench" / "results" / "stress.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    sys.exit(0 if all(met is not False for met in result["goals"].values()) else 1)


if __name__ == "__main__":
    main()
