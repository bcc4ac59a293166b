"""The routes. Each is thin: read and check the request, hand a job to the engine with the
encoder of its answer, and return what the engine's codec threads made of it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Hashable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from .. import workers
from ..engine import Engine, ErrorCode, RequestError, ServedModel, not_ready, shutting_down
from ..engine.errors import invalid_parameters
from ..engine.latents import latent_codes
from ..engine.runner import GenerateJob, ReconstructJob, VisualiseJob
from ..models import candidate_count
from .contract import MODEL_ROUTE_ERRORS, UPLOAD_ROUTE_ERRORS, error_responses, image_responses
from .forms import openapi_form, read_form
from .middleware import Handler
from .responses import (
    NPY_MEDIA_TYPE,
    generation_response,
    model_info,
    reconstruction_response,
    visualisation_response,
)
from .schemas import (
    GenerateRequest,
    GenerateResponse,
    HealthResponse,
    ModelsResponse,
    ReconstructForm,
    ReconstructResponse,
    VisualiseForm,
    VisualiseResponse,
)


# dependencies are async on purpose: FastAPI runs a sync one in a worker thread
async def get_engine(request: Request) -> Engine:
    return request.app.state.engine


EngineDep = Annotated[Engine, Depends(get_engine)]
router = APIRouter()
health = APIRouter(tags=["health"])


async def run(engine: Engine, model: ServedModel, key: Hashable, job: Any, size: int, request):
    """``engine.submit``, given up (499) when the client leaves before its answer."""
    task = asyncio.current_task()
    watcher = asyncio.create_task(_cancel_on_disconnect(request, task))
    try:
        return await engine.submit(model, key, job, size)
    except asyncio.CancelledError:
        if not watcher.done():
            raise  # cancelled by the server, not by the client leaving
        # the batcher has dropped the request if it had not run yet; the cancellation is
        # handled here, so later timeouts in this task must not see it
        task.uncancel()
        raise RequestError(ErrorCode.CLIENT_CLOSED_REQUEST, "the client disconnected") from None
    finally:
        watcher.cancel()


async def _cancel_on_disconnect(request: Request, task: asyncio.Task) -> None:
    """Cancel ``task`` when the client disconnects (the body has been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    task.cancel()


def _chosen(engine: Engine, name: str, endpoint: str, given: bool) -> ServedModel:
    """``engine.model``; a default that is unavailable is the client's to replace (422),
    as the OpenAPI document then asks for the name (the named one answers 503)."""
    try:
        return engine.model(name, endpoint)
    except RequestError as err:
        if given or err.code is not ErrorCode.MODEL_UNAVAILABLE:
            raise
        served = sorted(
            n for n, m in engine.models.items() if m.available and endpoint in m.endpoints
        )
        raise invalid_parameters(f"the default, {err.detail}; name one of {served}") from None


def _check_visualise(model: ServedModel, layer: int, k: int, channel: int | None) -> None:
    layers = len(model.layer_shapes)
    if layer > layers:
        raise invalid_parameters(
            f"layer {layer} is out of range: {model.name} has layers 1 to {layers}"
        )
    shape = model.layer_shapes[layer - 1]
    if channel is not None and channel >= shape[0]:
        raise invalid_parameters(
            f"channel {channel} is out of range: "
            f"layer {layer} of {model.name} has channels 0 to {shape[0] - 1}"
        )
    candidates = candidate_count(shape, channel)
    if k > candidates:
        raise invalid_parameters(
            f"k={k} is too large: layer {layer} of "
            f"{model.name} has {candidates} activations to choose from"
        )


@router.post(
    "/visualise",
    tags=["models"],
    response_class=Response,
    responses=image_responses(VisualiseResponse, (NPY_MEDIA_TYPE,))
    | error_responses(*UPLOAD_ROUTE_ERRORS),
    openapi_extra=openapi_form(VisualiseForm, "PNG, JPEG or WebP image"),
)
async def visualise(request: Request) -> Response:
    """Project a layer's top-k activations of an image back to pixel space (Zeiler & Fergus)."""
    engine: Engine = request.app.state.engine  # not a dependency: one less to solve (issue 27)
    form, uploads = await read_form(request, VisualiseForm)
    if len(uploads) > 1:
        raise invalid_parameters("file: /visualise takes one image per request")
    model = _chosen(engine, form.network, "visualise", "network" in form.model_fields_set)
    _check_visualise(model, form.layer, form.k, form.channel)

    def encode(vis):
        return visualisation_response(vis, model, form)

    key = ("visualise", form.layer, form.k, form.channel, form.method)
    return await run(engine, model, key, VisualiseJob(uploads[0], encode), 1, request)


@router.post(
    "/reconstruct",
    tags=["models"],
    response_class=Response,
    responses=image_responses(ReconstructResponse, ()) | error_responses(*UPLOAD_ROUTE_ERRORS),
    openapi_extra=openapi_form(ReconstructForm, "One or more images (repeat the field)", many=True),
)
async def reconstruct(request: Request) -> Response:
    """Reconstruct uploaded images with an auto-encoder or a VAE."""
    engine: Engine = request.app.state.engine  # as in visualise
    form, uploads = await read_form(request, ReconstructForm)
    model = _chosen(engine, form.model, "reconstruct", "model" in form.model_fields_set)
    max_files = engine.settings.max_files
    if len(uploads) > max_files:
        raise RequestError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"{len(uploads)} files is more than UNCONV_MAX_FILES={max_files}; send fewer",
        )
    job = ReconstructJob(uploads, lambda out: reconstruction_response(out, model, form.format))
    return await run(engine, model, ("reconstruct",), job, len(uploads), request)


@router.post(
    "/generate",
    tags=["models"],
    response_class=Response,
    responses=image_responses(GenerateResponse, (NPY_MEDIA_TYPE,))
    | error_responses(*MODEL_ROUTE_ERRORS),
)
async def generate(body: GenerateRequest, request: Request, engine: EngineDep) -> Response:
    """Generate new images with a VAE's decoder: from the prior, given latents, or a line."""
    model = _chosen(engine, body.model, "generate", "model" in body.model_fields_set)
    z, seed = latent_codes(body, model.latent_size, model.prior, model.labels)
    job = GenerateJob(z, lambda images: generation_response(images, z, seed, model, body.format))
    return await run(engine, model, ("generate",), job, len(z), request)


async def _generate_json(request: Request) -> Response | None:
    """``generate`` for a body that FastAPI would accept: ``application/json`` that parses and
    validates as FastAPI parses and validates it; None for any other, for the router to answer
    with FastAPI's own error."""
    if request.headers.get("content-type") != "application/json":
        return None
    try:
        body = GenerateRequest.model_validate(json.loads(await request.body()))
    except (ValueError, RecursionError):  # pydantic's ValidationError is a ValueError too
        return None
    return await generate(body, request, request.app.state.engine)


@router.get(
    "/models",
    tags=["models"],
    response_model=ModelsResponse,
    responses=error_responses(401, 500),
)
async def models(engine: EngineDep) -> ModelsResponse:
    """Every servable model and network, whether it is available, and why not."""
    return ModelsResponse(models=[model_info(m) for m in engine.models.values()])


@health.get("/healthz", response_model=HealthResponse)
@health.get("/v2/health/live", response_model=HealthResponse, include_in_schema=False)
async def live() -> HealthResponse:
    """Liveness: the process answers."""
    return HealthResponse(status="ok")


@health.get("/readyz", response_model=HealthResponse, responses=error_responses(503))
@health.get("/v2/health/ready", response_model=HealthResponse, include_in_schema=False)
async def ready(engine: EngineDep) -> HealthResponse:
    """Readiness: every available model is loaded and the service is not shutting down."""
    if engine.closing:
        raise shutting_down()
    if not engine.ready or not workers.all_ready():  # this worker's models, and every other's
        raise not_ready("the models are")
    loaded = sum(m.available for m in engine.models.values())
    return HealthResponse(
        status="ok", models_loaded=loaded, models_unavailable=len(engine.models) - loaded
    )


@health.get(
    "/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}}
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics: requests, latency, queue wait, batch sizes, inference time."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


# the busy POST routes, served without the router (middleware.DirectRoutes): path -> a handler
# of the request alone, which answers, or returns None to leave the request to the router
DIRECT_ROUTES: dict[str, Handler] = {
    "/reconstruct": reconstruct,
    "/visualise": visualise,
    "/generate": _generate_json,
}
