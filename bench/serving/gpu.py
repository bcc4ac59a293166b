"""The GPU section of ``make bench``: runs only where CUDA is present.

``/visualise`` on AlexNet layer 5 at concurrency 64 with batching on and off (the goal is 5x:
on a GPU one forward pass of 64 images costs little more than one of a single image), and the
CUDA tests (``pytest -m gpu``). ``python -m bench.serving.gpu`` runs this section alone.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from devkit.server import ROOT
from service.models import UndoableSequential, alexnet_features, exact_convolutions

from . import wrk
from .report import save, write_gpu_report
from .scenarios import load, requests_to_send, with_batches
from .server import machine, prepare_models, service


def model_alone(sizes=(1, 64), min_time: float = 2.0) -> dict[int, float]:
    """Images per second of AlexNet layer 5's visualisation on the GPU with no HTTP or codec,
    projections copied back to the host and convolutions exact, as the service has them: the
    premise of the 5x goal."""
    exact_convolutions()
    torch.manual_seed(0)
    deconv = UndoableSequential(alexnet_features().eval()).cuda()
    rates = {}
    with torch.inference_mode():
        for size in sizes:
            x = torch.randn(size, 3, 224, 224, device="cuda")
            deconv.visualise(x, 5, 9).projection.cpu()  # warm-up: cuDNN picks its algorithms
            began, calls = time.perf_counter(), 0
            while time.perf_counter() - began < min_time:
                deconv.visualise(x, 5, 9).projection.cpu()
                calls += 1
            rates[size] = round(calls * size / (time.perf_counter() - began), 1)
    return rates


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
    output = (tests.stdout + tests.stderr).strip().splitlines()
    return {
        "device": torch.cuda.get_device_name(0),
        "model_alone_images_per_s": model_alone(),
        "visualise_5_c64": rows,
        "tests": {"returncode": tests.returncode, "summary": summary, "output_tail": output[-40:]},
    }


def main() -> None:
    """``python -m bench.serving.gpu``: the GPU section alone, for a CUDA machine that has no time
    or tools for the whole of ``make bench``; writes docs/benchmarks-gpu.md and .json."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--seconds", type=float, default=10, help="length of each load")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = prepare_models(Path(tmp))
        results = {
            "machine": machine(),
            "command": "python -m bench.serving.gpu",
            "generator": "wrk" if wrk.available() else "httpx",
            "gpu": gpu_section(env, requests_to_send(), args.seconds),
        }
    save(results, args.out, "benchmarks-gpu", write_gpu_report)


if __name__ == "__main__":
    main()
