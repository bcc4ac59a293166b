"""What the benchmark sends, and the loads it runs against one server."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import resource
import statistics

import uvloop
from matplotlib import cbook
from PIL import Image

from devkit.images import png_bytes
from devkit.proc import cpu_seconds, machine_busy_seconds

from . import wrk
from .load import Prepared, run_load
from .server import batch_sizes, settle

# (request, model whose batches /metrics counts, concurrencies)
SERVICE_LOADS = {
    "reconstruct_1": ("ae", (1, 16, 64)),
    "reconstruct_64": ("ae", (1, 4)),
    "generate_64": ("vae", (1, 4)),
    "visualise_5": ("alexnet", (1, 16)),
    "visualise_cnn": ("cnn", (16,)),
}


def photo_jpeg(size: tuple[int, int] = (640, 480)) -> bytes:
    """A real photograph as a camera would send it: matplotlib's sample portrait of Grace
    Hopper (512x600), scaled and centre-cropped to ``size``, JPEG quality 90."""
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as image:
        scale = max(size[0] / image.width, size[1] / image.height)
        resized = image.convert("RGB").resize(
            (round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS
        )
    left, top = (resized.width - size[0]) // 2, (resized.height - size[1]) // 2
    out = io.BytesIO()
    resized.crop((left, top, left + size[0], top + size[1])).save(out, "JPEG", quality=90)
    return out.getvalue()


def requests_to_send() -> dict[str, Prepared]:
    digit, photo = png_bytes(seed=1), photo_jpeg()
    return {
        "reconstruct_1": Prepared.multipart("/reconstruct", [digit], {"model": "ae"}),
        "reconstruct_64": Prepared.multipart("/reconstruct", [digit] * 64, {"model": "ae"}),
        "generate_64": Prepared.json("/generate", '{"n": 64, "seed": 1}', images=64),
        "visualise_5": Prepared.multipart("/visualise", [photo], {"layer": "5"}, jpeg=True),
        "visualise_cnn": Prepared.multipart(
            "/visualise", [photo], {"layer": "4", "network": "cnn"}, jpeg=True
        ),
        "litserve": Prepared.json(
            "/reconstruct", json.dumps({"image": base64.b64encode(digit).decode()}), images=1
        ),
    }


def run_async(coroutine):
    """Run the httpx generator on uvloop: it shares the cores with the server under test."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def httpx_load(
    url: str, request: Prepared, concurrency: int, seconds: float, server_pid: int
) -> dict:
    """One load with the Python generator (the cross-check), and where the CPU went in its
    measured window: server and generator per request, and how busy the whole machine was."""

    def probe() -> tuple[float, float, tuple[float, float]]:
        own = resource.getrusage(resource.RUSAGE_SELF)
        return cpu_seconds(server_pid), own.ru_utime + own.ru_stime, machine_busy_seconds()

    result = run_async(run_load(url, request, concurrency, 10**6, seconds, probe=probe))
    (server0, client0, (busy0, total0)), (server1, client1, (busy1, total1)) = result.probes
    settle(server_pid)
    done = max(result.requests, 1)
    row = result.summary()
    row["server_cpu_ms"] = round((server1 - server0) / done * 1000, 3)
    row["client_cpu_ms"] = round((client1 - client0) / done * 1000, 3)
    row["cpu_busy"] = f"{(busy1 - busy0) / (total1 - total0):.0%}"
    row["generator"] = "httpx"
    return row


def load(
    url: str, request: Prepared, concurrency: int, seconds: float, pid: int, warmup_s: float = 1
) -> dict:
    """One load with the compiled generator when there is one, else the Python one (which
    always warms up with a request per worker)."""
    if wrk.available():
        return wrk.wrk_load(url, request, concurrency, seconds, pid, warmup_s)
    return httpx_load(url, request, concurrency, seconds, pid)


def with_batches(url: str, model: str, measure) -> dict:
    """``measure()``'s row plus the mean images per forward pass during it, from /metrics."""
    before = batch_sizes(url, model)
    row = measure()
    after = batch_sizes(url, model)
    passes = after["forward_passes"] - before["forward_passes"]
    images = (
        after["mean_batch_images"] * after["forward_passes"]
        - before["mean_batch_images"] * before["forward_passes"]
    )
    row["mean_batch_images"] = round(images / passes, 2) if passes else 0.0
    return row


def merge_rounds(rows: list[dict]) -> dict:
    """One row from several rounds of the same load: the median of each figure, the sum of
    requests and errors."""
    merged = dict(rows[0])
    for key, value in rows[0].items():
        if key in ("requests", "errors"):
            merged[key] = sum(r[key] for r in rows)
        elif key == "cpu_busy":
            merged[key] = f"{statistics.median(float(r[key][:-1]) for r in rows):.0f}%"
        elif isinstance(value, float) and key != "concurrency":
            merged[key] = round(statistics.median(r[key] for r in rows), 3)
    merged["rounds"] = len(rows)
    return merged
