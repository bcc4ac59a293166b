"""What the batcher runs: decode -> predict -> encode for a whole batch, in an inference thread.

Each job is one request: raw uploads or decoded ``Pixels`` (or latent codes), and ``encode``,
the caller's function that turns the job's result into its answer (the HTTP layer's response,
say; the engine never looks inside). A batch decodes all its images, runs one forward pass on
the model's device under ``torch.inference_mode()`` and encodes every answer, so that a request
costs the event loop no thread hand-off of its own. An image that cannot be decoded fails only
its own request: its result is the ``RequestError``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from .. import tracing
from ..models import DEFAULT_METHOD, Visualisation
from ..models.losses import sample_range
from .errors import RequestError
from .imaging import Pixels, Upload, decode_input
from .registry import ServedModel

Encode = Callable[[Any], Any]


@dataclass
class Reconstruction:
    """One request's reconstructions, and for a VAE the latent Gaussians they decode."""

    images: torch.Tensor  # (n, C, H, W) intensities in [0, 1]
    mean: torch.Tensor | None = None  # (n, latent) for a VAE
    log_var: torch.Tensor | None = None


@dataclass(frozen=True)
class ReconstructJob:
    """Images to reconstruct; ``encode`` gets their ``Reconstruction``."""

    uploads: list[Upload | Pixels]
    encode: Encode


@dataclass(frozen=True)
class VisualiseJob:
    """One image to visualise; ``encode`` gets its ``Visualisation`` (a batch of one)."""

    upload: Upload | Pixels
    encode: Encode


@dataclass(frozen=True)
class GenerateJob:
    """(n, latent) codes to decode at a pixel temperature; ``encode`` gets the (n, C, H, W)
    images."""

    z: torch.Tensor
    encode: Encode
    pixel_temperature: float = 1.0


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True)
    return x


def _sizes(tensors: Sequence[torch.Tensor]) -> list[int]:
    return [len(t) for t in tensors]


class CodecPool:
    """Maps decoding or encoding over a batch's requests on ``threads`` threads at once.

    Pillow, zlib and tensor ops release the GIL, so a batch of photos decodes and encodes on
    every core instead of one while the others wait for the next forward pass. The calling
    thread takes a share of the work itself. Each image's tensor ops run on one thread
    (``single_threaded``).
    """

    def __init__(self, threads: int):
        self.threads = threads
        self._executor = (
            ThreadPoolExecutor(
                threads - 1, thread_name_prefix="unconv-codec", initializer=single_threaded
            )
            if threads > 1
            else None
        )

    def map(self, fn: Callable, *sequences: Sequence) -> list:
        """``[fn(*args) for args in zip(*sequences)]``, in order, in contiguous chunks across
        the threads."""
        items = list(zip(*sequences, strict=True))
        if self._executor is None or len(items) < 2:
            return [fn(*args) for args in items]
        size = -(-len(items) // self.threads)
        chunks = [items[i : i + size] for i in range(size, len(items), size)]
        futures = [self._executor.submit(lambda c=c: [fn(*args) for args in c]) for c in chunks]
        results = [fn(*args) for args in items[:size]]
        for future in futures:
            results.extend(future.result())
        return results

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)


def single_threaded() -> None:
    """Run the calling thread's tensor ops on one thread: the initializer of the inference and
    codec threads. Decoding and encoding make small tensor ops between long stretches of Pillow
    and zlib, and after each op an OpenMP partner thread spins, waiting for the next one: with
    two threads decoding a JPEG costs about twice the CPU (docs/performance.md, "Changes").
    """
    torch.set_num_threads(1)


class ThreadShare:
    """Divides the CPU threads among the batches that run at once.

    A batch counts from its start to its end; its forward pass gets the threads divided by the
    batches running as it starts: all of them when it runs alone, for the lowest latency at low
    load, and a share when others run, so that the OpenMP threads of several passes do not
    outnumber the cores, where each parallel op waits for a partner that was preempted. A
    batch of fewer than ``min_items`` items runs on one thread: one image's ops are too small
    to split, and when another process holds a core the partner thread is the one preempted,
    which gives some requests a long wait (docs/performance.md). The count is set
    for the calling thread only (each one's OpenMP team is its own) and put back after the
    pass.
    """

    def __init__(self, threads: int, min_items: int = 2):
        self.threads = threads
        self.min_items = min_items
        self.running = 0
        self._lock = threading.Lock()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Count one batch as running while the block runs."""
        with self._lock:
            self.running += 1
        try:
            yield
        finally:
            with self._lock:
                self.running -= 1

    def share(self, items: int) -> int:
        """Threads for a forward pass of ``items`` items started now."""
        if items < self.min_items:
            return 1
        return max(1, self.threads // max(1, self.running))

    @contextmanager
    def forward(self, items: int) -> Iterator[int]:
        """Run a forward pass of ``items`` items in the calling thread on its share; yields
        the share."""
        share = self.share(items)
        before = torch.get_num_threads()
        torch.set_num_threads(share)
        try:
            yield share
        finally:
            torch.set_num_threads(before)


def decode_all(
    jobs: list, decode: Callable, pool: CodecPool
) -> tuple[list[int], list[torch.Tensor], dict]:
    """Decode every job; returns the indices that worked, their inputs, and the failures."""

    def attempt(job) -> torch.Tensor | RequestError:
        try:
            return decode(job)
        except RequestError as err:
            return err

    ok, inputs, failed = [], [], {}
    for i, result in enumerate(pool.map(attempt, jobs)):
        if isinstance(result, RequestError):
            failed[i] = result
        else:
            ok.append(i)
            inputs.append(result)
    return ok, inputs, failed


def in_order(count: int, ok: list[int], answers: list, failed: dict) -> list:
    results = [failed.get(i) for i in range(count)]
    for i, answer in zip(ok, answers, strict=True):
        results[i] = answer
    return results


def reconstruct(model: ServedModel, inputs: list[torch.Tensor], device) -> list[Reconstruction]:
    """(n_i, C, H, W) normalised inputs -> one reconstruction per request."""
    net = model.checkpoint.model
    x = to_device(torch.cat(inputs), device)
    sizes = _sizes(inputs)
    if model.kind == "vae":
        mean, log_var = net.encode(x)
        # the deterministic reconstruction: decode the latent mean
        images = net.decode(mean, sample_range(x)).cpu().split(sizes)
        parts = zip(images, mean.cpu().split(sizes), log_var.cpu().split(sizes), strict=True)
        return [Reconstruction(i, m, v) for i, m, v in parts]
    return [Reconstruction(i) for i in net.reconstruct(x).cpu().split(sizes)]


def visualise(
    model: ServedModel,
    inputs: list[torch.Tensor],
    device,
    layer: int,
    k: int,
    channel: int | None,
    method: str = DEFAULT_METHOD,
) -> list[Visualisation]:
    """(1, C, H, W) normalised images -> one visualisation each, every one its own top-k,
    projected by ``method`` (a name in ``service.models.METHODS``)."""
    x = to_device(torch.cat(inputs), device)
    vis = model.deconv.visualise(x, layer, k, channel, method)
    cpu = [t.cpu() for t in (vis.projection, vis.channel, vis.y, vis.x, vis.value)]
    return [
        Visualisation(*(t[i : i + 1] for t in cpu), activation_shape=vis.activation_shape)
        for i in range(len(inputs))
    ]


def generate(
    model: ServedModel, codes: list[torch.Tensor], device, pixel_temperatures: list[float]
) -> list[torch.Tensor]:
    """(n_i, latent) codes -> (n_i, C, H, W) images per request, each request's rendered at its
    own pixel temperature."""
    sizes = _sizes(codes)
    t = torch.tensor(pixel_temperatures).repeat_interleave(torch.tensor(sizes))
    z, t = to_device(torch.cat(codes), device), to_device(t, device)
    images = model.checkpoint.model.decode(z, pixel_temperature=t).cpu()
    return list(images.split(sizes))


@dataclass(frozen=True)
class ModelRunner:
    """One model's batches: where they run and what they share besides their jobs."""

    model: ServedModel
    device: torch.device
    max_pixels: int
    pool: CodecPool
    threads: ThreadShare

    def image(self, upload: Upload | Pixels) -> torch.Tensor:
        if isinstance(upload, Pixels):
            return self.model.image_spec.normalisation.normalise(upload.images)
        return decode_input(
            upload.data, upload.content_type, self.model.image_spec, self.max_pixels
        )


def _predict_generate(runner: ModelRunner, jobs: list[GenerateJob]) -> list:
    items = sum(len(job.z) for job in jobs)
    with tracing.phase("forward pass"), runner.threads.forward(items):
        codes, temperatures = [job.z for job in jobs], [job.pixel_temperature for job in jobs]
        images = generate(runner.model, codes, runner.device, temperatures)
    with tracing.phase("encode"):
        return runner.pool.map(lambda out, job: job.encode(out), images, jobs)


def _predict_reconstruct(runner: ModelRunner, jobs: list[ReconstructJob]) -> list:
    def decode(job: ReconstructJob) -> torch.Tensor:
        return torch.cat([runner.image(upload) for upload in job.uploads])

    with tracing.phase("decode"):
        ok, inputs, failed = decode_all(jobs, decode, runner.pool)
    with tracing.phase("forward pass"), runner.threads.forward(sum(len(x) for x in inputs)):
        outputs = reconstruct(runner.model, inputs, runner.device) if inputs else []
    with tracing.phase("encode"):
        answers = runner.pool.map(lambda i, out: jobs[i].encode(out), ok, outputs)
    return in_order(len(jobs), ok, answers, failed)


def _predict_visualise(runner: ModelRunner, jobs: list[VisualiseJob], *params) -> list:
    with tracing.phase("decode"):
        ok, inputs, failed = decode_all(jobs, lambda job: runner.image(job.upload), runner.pool)
    with tracing.phase("forward pass"), runner.threads.forward(len(inputs)):
        outputs = visualise(runner.model, inputs, runner.device, *params) if inputs else []
    with tracing.phase("encode"):
        answers = runner.pool.map(lambda i, out: jobs[i].encode(out), ok, outputs)
    return in_order(len(jobs), ok, answers, failed)


# the first item of a batcher key names the operation; the rest are its shared parameters
OPERATIONS: dict[str, Callable[..., list]] = {
    "generate": _predict_generate,
    "reconstruct": _predict_reconstruct,
    "visualise": _predict_visualise,
}


def make_predict(
    model: ServedModel,
    device: torch.device,
    max_pixels: int,
    pool: CodecPool,
    threads: ThreadShare,
    operations: Mapping[str, Callable[..., list]] = OPERATIONS,
):
    """The ``predict(key, jobs)`` of a model's batcher. The key's first item names the
    operation (a key of ``operations``) and the rest are the parameters the whole batch
    shares; every result is what the job's ``encode`` made of it, or the error of that one
    request."""
    runner = ModelRunner(model, device, max_pixels, pool, threads)

    def predict(key: Hashable, jobs: list) -> list[Any]:
        operation, *params = key
        if operation not in operations:
            raise ValueError(
                f"expected an operation in {sorted(operations)} but received {operation!r}"
            )
        try:
            with threads.batch(), torch.inference_mode():
                return operations[operation](runner, jobs, *params)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()  # the batcher retries smaller halves
            raise

    return predict
