"""The GPU section of ``make bench``: runs only where CUDA is present.

``/visualise`` on AlexNet layer 5 at concurrency 64 with batching on and off (the goal is 5x:
on a GPU one forward pass of 64 images costs little more than one of a single image), and the
CUDA tests (``pytest -m gpu``).
"""

from __future__ import annotations

import subprocess
import sys
from functools import partial

import torch

from .scenarios import load, with_batches
from .server import ROOT, service


def gpu_section(env: dict, requests: dict, seconds: float) -> dict:
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device on this machine"}
    print("GPU: /visualise AlexNet layer 5 at c=64, batching on and off", flush=True)
    env = env | {"UNCONV_DEVICE": "cuda"}
    rows = {}
    for mode, extra in (("on", {}), ("off", {"UNCONV_MAX_BATCH_SIZE": "1"})):
        with service(env | extra) as (url, process, _):
            measure = partial(load, url, requests["visualise_5"], 64, seconds, process.pid)
            rows[mode] = with_batches(url, "alexnet", measure)
        print(f"  batching {mode}: {rows[mode]}", flush=True)
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    summary = (tests.stdout.strip().splitlines() or ["no output"])[-1]
    return {
        "device": torch.cuda.get_device_name(0),
        "visualise_5_c64": rows,
        "tests": {"returncode": tests.returncode, "summary": summary},
    }
