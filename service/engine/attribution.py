"""/attribute's work: the passes each method needs, in batches shared with other requests.

Grad-CAM and Guided Grad-CAM are one forward and one backward pass of the image: one job, in a
batch with other requests' images under the key ``("attribute", method, layer)``. Integrated
gradients and occlusion are many passes of one image. The image is classified first (a job of
its own, ``("classify",)``, which decodes it and gives the logits that choose the default target
and occlusion's unoccluded score); then its passes go to the batcher in chunks,
``("gradients",)`` or ``("occlusion",)``, which it packs with other requests' chunks into
batches of up to UNCONV_MAX_BATCH_SIZE passes; last, the passes' outputs are reduced to the map
and encoded off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch

from .. import tracing
from ..models import (
    ATTRIBUTION_METHODS,
    DEFAULT_STEPS,
    MAX_OCCLUSIONS,
    MAX_STEPS,
    PREDICTED,
    IntegratedGradientsPlan,
    OcclusionPlan,
    gradcam,
    guided_gradcam,
)
from .errors import invalid_parameters
from .imaging import Pixels, Upload
from .registry import ServedModel
from .runner import ModelRunner, decode_all, in_order, to_device

if TYPE_CHECKING:
    from .engine import Engine

Encode = Callable[["Attribution"], Any]
METHODS = ATTRIBUTION_METHODS
__all__ = [
    "DEFAULT_STEPS",
    "MAX_STEPS",
    "METHODS",
    "OPERATIONS",
    "Attribution",
    "AttributionRequest",
    "CamJob",
    "ClassifyJob",
    "PassesJob",
    "attribute",
    "chunk_size",
    "resolve",
]
_CAMS = {"gradcam": gradcam, "guided_gradcam": guided_gradcam}


@dataclass(frozen=True)
class AttributionRequest:
    """What one request asks for; ``resolve`` fills in the model's defaults."""

    method: str
    target: int | None = None  # None: the predicted class
    layer: int | None = None  # gradcam and guided_gradcam
    steps: int = DEFAULT_STEPS  # integrated_gradients
    window: int | None = None  # occlusion
    stride: int | None = None  # occlusion


@dataclass(frozen=True)
class Attribution:
    """One image's map and what it explains.

    Attributes
    ----------
    image : (C, H, W) torch.Tensor
        The normalised network input.
    logits : (num_classes,) torch.Tensor
    target : int
        The class whose logit the map explains.
    attribution : torch.Tensor
        (1, H, W) for gradcam and occlusion, (C, H, W) for the other two.
    request : AttributionRequest
        With the defaults filled in.
    """

    image: torch.Tensor
    logits: torch.Tensor
    target: int
    attribution: torch.Tensor
    request: AttributionRequest


def resolve(model: ServedModel, request: AttributionRequest) -> AttributionRequest:
    """``request`` with the model's defaults filled in (the layer, occlusion's window and
    stride); raises ``invalid_parameters`` naming a target, layer, window or stride out of
    this model's range."""
    net, size = model.classifier, model.image_spec.size
    if request.target is not None and not 0 <= request.target < net.num_classes:
        raise invalid_parameters(
            f"target {request.target} is out of range: {model.name} has classes 0 to "
            f"{net.num_classes - 1}"
        )
    layer = net.last_convolution() if request.layer is None else request.layer
    if not 1 <= layer <= net.feature_layers:
        raise invalid_parameters(
            f"layer {layer} is out of range: {model.name} has layers 1 to {net.feature_layers}"
        )
    defaults = model.occlusion_defaults
    window = defaults.window if request.window is None else request.window
    if not 1 <= window <= size:
        raise invalid_parameters(
            f"window {window} is out of range: {model.name}'s inputs are {size}x{size} pixels"
        )
    stride = defaults.stride if request.stride is None else request.stride
    if stride < defaults.min_stride:
        raise invalid_parameters(
            f"stride {stride} is too short for {model.name}'s {size}x{size} inputs: at least "
            f"{defaults.min_stride}, so that there are at most {MAX_OCCLUSIONS} occlusions"
        )
    return replace(request, layer=layer, window=window, stride=stride)


@dataclass(frozen=True)
class CamJob:
    """One image for Grad-CAM or Guided Grad-CAM; ``encode`` gets its ``Attribution``."""

    upload: Upload | Pixels
    request: AttributionRequest
    encode: Encode


@dataclass(frozen=True)
class ClassifyJob:
    """One image to decode and classify: the result is its (1, C, H, W) input on the model's
    device and its (num_classes,) logits on the CPU."""

    upload: Upload | Pixels


@dataclass(frozen=True)
class PassesJob:
    """Passes ``start`` to ``stop`` of one image's plan, for the logit of ``target``."""

    plan: IntegratedGradientsPlan | OcclusionPlan
    start: int
    stop: int
    target: int


def _predict_cam(runner: ModelRunner, jobs: list[CamJob], method: str, layer: int) -> list:
    with tracing.phase("decode"):
        ok, inputs, failed = decode_all(jobs, lambda job: runner.image(job.upload), runner.pool)
    if not inputs:
        return in_order(len(jobs), ok, [], failed)
    x = to_device(torch.cat(inputs), runner.device)
    wanted = [jobs[i].request.target for i in ok]
    target = torch.tensor([PREDICTED if t is None else t for t in wanted], device=x.device)
    with tracing.phase("forward pass"), runner.threads.forward(len(inputs)):
        logits, maps = _CAMS[method](runner.model.classifier, x, target, layer)
    logits, maps, x = logits.cpu(), maps.cpu(), x.cpu()
    chosen = torch.where(target.cpu() == PREDICTED, logits.argmax(dim=1), target.cpu())
    results = [
        Attribution(x[j], logits[j], int(chosen[j]), maps[j], jobs[i].request)
        for j, i in enumerate(ok)
    ]
    with tracing.phase("encode"):
        answers = runner.pool.map(lambda i, result: jobs[i].encode(result), ok, results)
    return in_order(len(jobs), ok, answers, failed)


def _predict_classify(runner: ModelRunner, jobs: list[ClassifyJob]) -> list:
    with tracing.phase("decode"):
        ok, inputs, failed = decode_all(jobs, lambda job: runner.image(job.upload), runner.pool)
    answers = []
    if inputs:
        x = to_device(torch.cat(inputs), runner.device)
        with tracing.phase("forward pass"), runner.threads.forward(len(inputs)):
            logits = runner.model.classifier.logits(x).cpu()
        answers = [(x[j : j + 1], logits[j]) for j in range(len(inputs))]
    return in_order(len(jobs), ok, answers, failed)


def _passes(jobs: list[PassesJob]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    x = torch.cat([job.plan.inputs(job.start, job.stop) for job in jobs])
    sizes = [job.stop - job.start for job in jobs]
    target = [job.target for job, n in zip(jobs, sizes, strict=True) for _ in range(n)]
    return x, torch.tensor(target, device=x.device), sizes


def _predict_gradients(runner: ModelRunner, jobs: list[PassesJob]) -> list:
    items = sum(job.stop - job.start for job in jobs)
    with tracing.phase("forward pass"), runner.threads.forward(items):
        x, target, sizes = _passes(jobs)
        _, gradients = runner.model.classifier.target_gradient(x, target)
    return list(gradients.split(sizes))


def _predict_occlusion(runner: ModelRunner, jobs: list[PassesJob]) -> list:
    items = sum(job.stop - job.start for job in jobs)
    with tracing.phase("forward pass"), runner.threads.forward(items):
        x, target, sizes = _passes(jobs)
        scores = runner.model.classifier.logits(x).gather(1, target[:, None])[:, 0]
    return list(scores.split(sizes))


OPERATIONS = {
    "attribute": _predict_cam,
    "classify": _predict_classify,
    "gradients": _predict_gradients,
    "occlusion": _predict_occlusion,
}


def chunk_size(passes: int, max_batch_size: int, concurrent_batches: int) -> int:
    """Passes per job: even chunks of at most a batch's share of the concurrent batches, so
    that the chunks of as many requests as there are inference threads fill a batch."""
    limit = max(1, max_batch_size // concurrent_batches)
    chunks = -(-passes // limit)
    return -(-passes // chunks)


async def _passes_through(
    engine: Engine,
    model: ServedModel,
    plan: IntegratedGradientsPlan | OcclusionPlan,
    target: int,
    method: str,
) -> list[torch.Tensor]:
    """The outputs of the plan's passes, in order, submitted in chunks."""
    settings = engine.settings
    chunk = chunk_size(plan.steps, settings.max_batch_size, settings.concurrent_batches)
    key = ("gradients",) if method == "integrated_gradients" else ("occlusion",)
    jobs = [
        PassesJob(plan, start, min(start + chunk, plan.steps), target)
        for start in range(0, plan.steps, chunk)
    ]
    # one chunk of a request in the queue at a time: a batch that runs alone has every thread
    # (ThreadShare), and many requests leave room in the queue (UNCONV_MAX_QUEUE counts passes)
    # and keep their chunks' waits short (UNCONV_REQUEST_TIMEOUT_S bounds each)
    return [await engine.submit(model, key, job, job.stop - job.start) for job in jobs]


async def attribute(
    engine: Engine,
    model: ServedModel,
    upload: Upload | Pixels,
    request: AttributionRequest,
    encode: Encode,
) -> Any:
    """
    The attribution of one image, as ``encode`` makes it into an answer.

    Parameters
    ----------
    engine : Engine
        Where the jobs are batched.
    model : ServedModel
        A classifier or network with ``classifier`` loaded.
    upload : Upload or Pixels
        The image.
    request : AttributionRequest
        Resolved (``resolve``).
    encode : callable
        ``Attribution`` -> the answer; runs off the event loop.

    Raises
    ------
    RequestError
        As ``Engine.submit`` and the image's decoding raise them.
    """
    if request.method in _CAMS:
        key = ("attribute", request.method, request.layer)
        return await engine.submit(model, key, CamJob(upload, request, encode), 1)
    image, logits = await engine.submit(model, ("classify",), ClassifyJob(upload), 1)
    target = int(logits.argmax()) if request.target is None else request.target
    if request.method == "integrated_gradients":
        plan = IntegratedGradientsPlan.of(image, request.steps)
    else:
        plan = OcclusionPlan(image, request.window, request.stride)
    outputs = await _passes_through(engine, model, plan, target, request.method)

    def finish() -> Any:
        with torch.inference_mode():
            passes = torch.cat(outputs)
            if isinstance(plan, IntegratedGradientsPlan):
                attribution = plan.reduce(passes)
            else:
                attribution = plan.reduce(logits[target].to(passes.device), passes)
            result = Attribution(image[0].cpu(), logits, target, attribution[0].cpu(), request)
        return encode(result)

    return await asyncio.to_thread(finish)
