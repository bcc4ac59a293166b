"""The ceiling: each endpoint's work in plain PyTorch + Pillow, without HTTP, at its best.

"model" is the forward pass alone; "codec" adds decoding the uploads and encoding the answer
PNGs exactly as the service does (``service.engine.imaging``). Every work is timed at several batch
sizes and several ways of splitting the cores (``Split``): one pipeline whose forward pass gets
every core and whose codec runs on as many threads as cores, or one independent
single-threaded pipeline per core, each a process as each of the service's workers is, so
that one decodes while another runs its forward pass. The best rate of all is the ceiling; a
service that beat it would mean the ceiling missed a better split. Each model has the memory
layout that runs it fastest (channels-last for the MNIST nets, contiguous for AlexNet;
docs/performance.md), as in the service.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from service.engine.imaging import ImageSpec, decode_input, encode_png, grid, projection_to_image
from service.engine.runner import CodecPool
from service.models import (
    IMAGENET_NORMALISATION,
    MNIST_NORMALISATION,
    UndoableSequential,
    alexnet_features,
)
from training.recipes import RECIPES

MAX_PIXELS = 10**8


@dataclass(frozen=True)
class Split:
    """How the cores are used: ``workers`` pipelines side by side (processes), each with
    ``torch_threads`` for its forward pass and ``codec_threads`` for decoding and encoding."""

    workers: int
    torch_threads: int
    codec_threads: int

    def __str__(self) -> str:
        return f"{self.workers}x(torch {self.torch_threads}, codec {self.codec_threads})"


def splits(cores: int | None = None) -> list[Split]:
    cores = cores or os.cpu_count() or 1
    # the service's default is the second: a worker process per core, each single-threaded
    options = {Split(1, cores, cores), Split(cores, 1, 1), Split(cores, 1, min(4, cores))}
    if cores >= 4:
        options.add(Split(2, cores // 2, cores // 2))
    return sorted(options, key=lambda s: s.workers)


# work(batch_size, pool, torch_threads) -> a callable that processes one batch
Work = Callable[[int, CodecPool, int], Callable[[], object]]


def _forward(threads: int):
    """Run the block's tensor ops on ``threads`` threads, the rest of the calling thread's on
    one (as the service does: small codec ops do not pay for an OpenMP team)."""

    class _Scope:
        def __enter__(self):
            torch.set_num_threads(threads)

        def __exit__(self, *exc):
            torch.set_num_threads(1)

    return _Scope()


def rate(work: Work, batch_size: int, split: Split, min_time: float = 0.4) -> float:
    """Images per second of ``split.workers`` pipelines each running ``work`` back to back.

    Each pipeline is a process of its own (forked), as each of the service's workers is:
    threads of one process would take turns at the GIL for the codec's Python, and a ceiling
    that the service beats is no ceiling. Each counts the batches it finished in the window and
    the time of its last one; none starts a batch after the window once it has finished two,
    so that none runs alone at the end.
    """
    context = multiprocessing.get_context("fork")
    start, stop, results = context.Barrier(split.workers + 1), context.Event(), context.Queue()

    def pipeline() -> None:
        results.put(_run(work, batch_size, split, start, stop))

    processes = [context.Process(target=pipeline, daemon=True) for _ in range(split.workers)]
    for process in processes:
        process.start()
    start.wait()
    time.sleep(min_time)
    stop.set()
    done = [results.get(timeout=600) for _ in processes]
    for process in processes:
        process.join()
    return sum(images / seconds for images, seconds in done)


def _run(work: Work, batch_size: int, split: Split, start, stop) -> tuple[int, float]:
    """(images, seconds) of one pipeline, from ``start`` until ``stop`` and two batches."""
    torch.set_num_threads(1)
    pool = CodecPool(split.codec_threads)
    call = work(batch_size, pool, split.torch_threads)
    call()  # warm-up
    start.wait()
    began, calls, done = time.perf_counter(), 0, (0, 0.0)
    while not stop.is_set() or calls < 2:
        call()
        calls += 1
        done = (calls * batch_size, time.perf_counter() - began)
    pool.shutdown()
    return done


def best(
    work: Work, sizes, min_time: float = 0.4, cores: int | None = None, codec: bool = True
) -> dict:
    """The best rate over batch sizes and splits, and every rate measured. Without a codec
    (``codec=False``) the splits that differ only in codec threads are timed once."""
    candidates = {
        (s.workers, s.torch_threads, s.codec_threads if codec else 0): s
        for s in reversed(splits(cores))
    }
    rates = {(bs, s): rate(work, bs, s, min_time) for s in candidates.values() for bs in sizes}
    (bs, split), top = max(rates.items(), key=lambda item: item[1])
    return {
        "images_per_s": round(top, 1),
        "batch_size": bs,
        "split": str(split),
        "by_config": {f"{b} @ {s}": round(v, 1) for (b, s), v in rates.items()},
    }


def _decode_all(pool: CodecPool, data: bytes, mime: str, spec: ImageSpec, bs: int):
    return torch.cat(pool.map(lambda _: decode_input(data, mime, spec, MAX_PIXELS), range(bs)))


def reconstruct_works(png: bytes) -> tuple[Work, Work]:
    """The AE's reconstruction: (model only, with the codec)."""
    ae = RECIPES["ae"].config.build("binomial").eval().to(memory_format=torch.channels_last)
    spec = ImageSpec(1, 28, MNIST_NORMALISATION)

    def model_only(bs, pool, threads):
        x = torch.randn(bs, 1, 28, 28)

        @torch.inference_mode()
        def call():
            with _forward(threads):
                return ae.reconstruct(x)

        return call

    def with_codec(bs, pool, threads):
        @torch.inference_mode()
        def call():
            x = _decode_all(pool, png, "image/png", spec, bs)
            with _forward(threads):
                y = ae.reconstruct(x)
            return pool.map(encode_png, list(y))

        return call

    return model_only, with_codec


def reconstruct(png: bytes, min_time: float = 0.4, sizes=(1, 8, 16, 32, 64, 128)) -> dict:
    model_only, with_codec = reconstruct_works(png)
    return {
        "model": best(model_only, sizes, min_time, codec=False),
        "codec": best(with_codec, sizes, min_time),
    }


def generate_works(n: int = 64) -> tuple[Work, Work]:
    """The VAE drawing ``n`` codes from its prior and decoding them into one grid PNG: (model
    only, with the codec)."""
    vae = RECIPES["vae"].config.build("binomial").eval().to(memory_format=torch.channels_last)

    def work(codec: bool):
        def make(bs, pool, threads):
            @torch.inference_mode()
            def call():
                with _forward(threads):
                    # as /generate draws them: from the prior, with a generator seeded anew
                    z = vae.sample_prior(n, torch.Generator().manual_seed(bs))
                    images = vae.decode(z, pixel_temperature=vae.pixel_temperature)
                return encode_png(grid(images)) if codec else images

            return call

        return make

    return work(False), work(True)


def generate(n: int = 64, min_time: float = 0.4) -> dict:
    model_only, with_codec = generate_works(n)
    return {
        "model": best(model_only, (n,), min_time, codec=False),
        "codec": best(with_codec, (n,), min_time),
    }


def _visualise_works(deconv, spec, data: bytes, mime: str, layer: int) -> tuple[Work, Work]:
    def model_only(bs, pool, threads):
        x = torch.randn(bs, *spec.shape)

        @torch.inference_mode()
        def call():
            with _forward(threads):
                return deconv.visualise(x, layer, 9)

        return call

    def with_codec(bs, pool, threads):
        @torch.inference_mode()
        def call():
            x = _decode_all(pool, data, mime, spec, bs)
            with _forward(threads):
                vis = deconv.visualise(x, layer, 9)
            return pool.map(lambda p: encode_png(projection_to_image(p)), list(vis.projection))

        return call

    return model_only, with_codec


def visualise_works(photo: bytes) -> dict[str, tuple[Work, Work]]:
    """AlexNet layer 5 and the MNIST CNN's layer 4 on a JPEG photograph: (model only, with
    the codec) of each."""
    torch.manual_seed(0)
    alexnet = UndoableSequential(alexnet_features().eval())
    cnn = UndoableSequential(
        RECIPES["cnn"].config.build().features.eval().to(memory_format=torch.channels_last)
    )
    imagenet = ImageSpec(3, 224, IMAGENET_NORMALISATION, resize=256)
    mnist = ImageSpec(1, 28, MNIST_NORMALISATION)
    return {
        "alexnet_5": _visualise_works(alexnet, imagenet, photo, "image/jpeg", 5),
        "cnn_4": _visualise_works(cnn, mnist, photo, "image/jpeg", 4),
    }


def visualise(photo: bytes, min_time: float = 0.4) -> dict:
    sizes = {"alexnet_5": (1, 4, 16), "cnn_4": (1, 8, 32)}
    return {
        name: {
            "model": best(model_only, sizes[name], min_time, codec=False),
            "codec": best(with_codec, sizes[name], min_time),
        }
        for name, (model_only, with_codec) in visualise_works(photo).items()
    }


def measure(png: bytes, photo: bytes, min_time: float) -> dict:
    return {
        "reconstruct": reconstruct(png, min_time),
        "generate_64": generate(64, min_time),
        "visualise": visualise(photo, min_time),
    }


def codec_works(png: bytes, photo: bytes) -> dict[str, Work]:
    """Each work with its codec, by its name in the ceiling's results (``measure``)."""
    vis = visualise_works(photo)
    return {
        "reconstruct": reconstruct_works(png)[1],
        "generate_64": generate_works(64)[1],
        "alexnet_5": vis["alexnet_5"][1],
        "cnn_4": vis["cnn_4"][1],
    }


def parse_split(text: str) -> Split:
    """The ``Split`` that ``str`` wrote as ``text``."""
    workers, torch_threads, codec_threads = map(int, re.findall(r"\d+", text))
    return Split(workers, torch_threads, codec_threads)


def serve(png: bytes, photo: bytes, lines, out) -> None:
    """Say "ready" once the works are built, then answer each JSON line ``{"work",
    "batch_size", "split", "seconds"}`` with the rate of that work at that configuration (a
    line of JSON), until the input ends: the ceiling's best configuration measured again
    beside each load (``bench.serving.benchmark``)."""
    works = codec_works(png, photo)
    out.write("ready\n")  # no load should run beside this process's start
    out.flush()
    for line in lines:
        ask = json.loads(line)
        split = parse_split(ask["split"])
        images_per_s = rate(works[ask["work"]], ask["batch_size"], split, ask["seconds"])
        out.write(json.dumps({"images_per_s": round(images_per_s, 1)}) + "\n")
        out.flush()


if __name__ == "__main__":
    # ``python -m bench.serving.ceiling SECONDS`` prints the ceiling as JSON; ``... serve``
    # answers requests for one configuration's rate (``serve``). A fresh process whose own
    # tensor ops stay on one thread: a child forked from a process that has started an OpenMP
    # team waits forever on that team's threads, which the fork did not copy.
    from bench.serving.scenarios import photo_jpeg
    from devkit.images import png_bytes
    from service.runtime import keep_freed_memory

    torch.set_num_threads(1)
    keep_freed_memory()  # as the service does, so that page faults do not slow the ceiling
    if sys.argv[1] == "serve":
        serve(png_bytes(seed=1), photo_jpeg(), sys.stdin, sys.stdout)
    else:
        print(json.dumps(measure(png_bytes(seed=1), photo_jpeg(), float(sys.argv[1]))))
