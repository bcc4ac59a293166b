"""The HTTP API: app factory and routes. Each route is thin: check the parameters, then hand
the raw request to its model's batcher, which decodes, predicts and encodes off the event loop."""

from __future__ import annotations

import hashlib
import logging
import secrets
from contextlib import asynccontextmanager
from typing import Annotated

import torch
from fastapi import APIRouter, Depends, FastAPI, Request, Security
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from prometheus_client import CONTENT_TYPE_LATEST

from . import __version__
from .contract import (
    MODEL_ROUTE_ERRORS,
    UPLOAD_ROUTE_ERRORS,
    error_responses,
    image_responses,
    install_openapi,
)
from .encoding import NPY_MEDIA_TYPE
from .errors import ServiceError, error_response, install_error_handlers, shutting_down
from .forms import openapi_form, read_form
from .inference import GenerateJob, ReconstructJob, VisualiseJob
from .latents import latent_codes
from .metrics import Metrics
from .middleware import BodyLimitMiddleware, MetricsMiddleware
from .registry import ServedModel
from .runtime import keep_freed_memory
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
from .settings import Settings, load_settings
from .state import ServiceState
from .web import UNCOUNTED_ROUTES, install_web
from .workers import all_ready

log = logging.getLogger("unconv")


# dependencies are async on purpose: FastAPI runs a sync one in a worker thread
async def get_service(request: Request) -> ServiceState:
    return request.app.state.service


_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="Needed when UNCONV_API_KEY is set"
)


async def require_api_key(request: Request, key: str | None = Security(_api_key_header)) -> None:
    expected = request.app.state.settings.api_key.get_secret_value()
    # digests of equal length: the time taken tells nothing of the key's length or content
    given = hashlib.sha256((key or "").encode()).digest()
    if not secrets.compare_digest(given, hashlib.sha256(expected.encode()).digest()) or not key:
        raise ServiceError(
            401, "unauthorized", "missing or wrong X-API-Key header", {"WWW-Authenticate": "ApiKey"}
        )


Service = Annotated[ServiceState, Depends(get_service)]
router = APIRouter()
health = APIRouter(tags=["health"])


def _check_visualise(model: ServedModel, layer: int, k: int, channel: int | None) -> None:
    layers = len(model.layer_shapes)
    if layer > layers:
        raise ServiceError(
            422,
            "invalid_parameters",
            f"layer {layer} is out of range: {model.name} has layers 1 to {layers}",
        )
    c, h, w = model.layer_shapes[layer - 1]
    if channel is not None and channel >= c:
        raise ServiceError(
            422,
            "invalid_parameters",
            f"channel {channel} is out of range: "
            f"layer {layer} of {model.name} has channels 0 to {c - 1}",
        )
    candidates = h * w if channel is not None else c * h * w
    if k > candidates:
        raise ServiceError(
            422,
            "invalid_parameters",
            f"k={k} is too large: layer {layer} of "
            f"{model.name} has {candidates} activations to choose from",
        )


@router.post(
    "/visualise",
    tags=["models"],
    response_class=Response,
    responses=image_responses(VisualiseResponse, (NPY_MEDIA_TYPE,))
    | error_responses(*UPLOAD_ROUTE_ERRORS),
    openapi_extra=openapi_form(VisualiseForm, "PNG, JPEG or WebP image"),
)
async def visualise(request: Request, service: Service) -> Response:
    """Project a layer's top-k activations of an image back to pixel space (Zeiler & Fergus)."""
    form, uploads = await read_form(request, VisualiseForm)
    if len(uploads) > 1:
        raise ServiceError(
            422, "invalid_parameters", "file: /visualise takes one image per request"
        )
    model = service.model(form.network, "visualise")
    _check_visualise(model, form.layer, form.k, form.channel)
    key = ("visualise", form.layer, form.k, form.channel)
    return await service.run(model, key, VisualiseJob(uploads[0], form.format), 1, request)


@router.post(
    "/reconstruct",
    tags=["models"],
    response_class=Response,
    responses=image_responses(ReconstructResponse, ()) | error_responses(*UPLOAD_ROUTE_ERRORS),
    openapi_extra=openapi_form(ReconstructForm, "One or more images (repeat the field)", many=True),
)
async def reconstruct(request: Request, service: Service) -> Response:
    """Reconstruct uploaded images with an auto-encoder or a VAE."""
    form, uploads = await read_form(request, ReconstructForm)
    served = service.model(form.model, "reconstruct")
    if len(uploads) > service.settings.max_files:
        raise ServiceError(
            413,
            "payload_too_large",
            f"{len(uploads)} files is more than "
            f"UNCONV_MAX_FILES={service.settings.max_files}; send fewer",
        )
    job = ReconstructJob(uploads, form.format)
    return await service.run(served, ("reconstruct",), job, len(uploads), request)


@router.post(
    "/generate",
    tags=["models"],
    response_class=Response,
    responses=image_responses(GenerateResponse, (NPY_MEDIA_TYPE,))
    | error_responses(*MODEL_ROUTE_ERRORS),
)
async def generate(body: GenerateRequest, request: Request, service: Service) -> Response:
    """Generate new images with a VAE's decoder: from the prior, given latents, or a line."""
    served = service.model(body.model, "generate")
    z, seed = latent_codes(body, served.latent_size, served.prior, served.labels)
    job = GenerateJob(z, seed, body.format)
    return await service.run(served, ("generate",), job, len(z), request)


@router.get(
    "/models",
    tags=["models"],
    response_model=ModelsResponse,
    responses=error_responses(401, 500),
)
async def models(service: Service) -> ModelsResponse:
    """Every servable model and network, whether it is available, and why not."""
    return ModelsResponse(models=[m.info() for m in service.models.values()])


@health.get("/healthz", response_model=HealthResponse)
@health.get("/v2/health/live", response_model=HealthResponse, include_in_schema=False)
async def live() -> HealthResponse:
    """Liveness: the process answers."""
    return HealthResponse(status="ok")


@health.get("/readyz", response_model=HealthResponse, responses=error_responses(503))
@health.get("/v2/health/ready", response_model=HealthResponse, include_in_schema=False)
async def ready(service: Service):
    """Readiness: every available model is loaded and the service is not shutting down."""
    if service.closing:
        raise shutting_down()
    if not service.ready or not all_ready():  # this worker's models, and every other's
        return error_response(503, "not_ready", "models are still loading", {"Retry-After": "2"})
    loaded = sum(m.available for m in service.models.values())
    return HealthResponse(
        status="ok", models_loaded=loaded, models_unavailable=len(service.models) - loaded
    )


@health.get(
    "/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}}
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics: requests, latency, queue wait, batch sizes, inference time."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; models load in its lifespan, never at import."""
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        keep_freed_memory()
        app.state.service = ServiceState(settings, metrics)
        torch.set_num_threads(app.state.service.threads.threads)
        app.state.service.start()
        try:
            yield
        finally:
            await app.state.service.close()

    app = FastAPI(
        title="unconv",
        version=__version__,
        summary="Deconvnet visualisations, auto-encoder reconstructions and VAE samples",
        lifespan=lifespan,
        default_response_class=JSONResponse,
        docs_url=None,  # served offline by install_web
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    install_error_handlers(app)
    install_openapi(app)
    # the model routes first: they are the busy ones, and routes match in order. The key check
    # is there only when a key is set, so that the docs show a key only when one is needed.
    app.include_router(
        router, dependencies=[Depends(require_api_key)] if settings.api_key is not None else []
    )
    app.include_router(health)
    install_web(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics, uncounted=UNCOUNTED_ROUTES)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=["X-Seed", "Retry-After"],
        )
    return app


# `uvicorn service.api:app` builds the app at import: a bad setting exits here with one line
app = create_app(load_settings())
