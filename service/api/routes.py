"""The routes. Each is thin: read and check the request, hand a job to the engine with the
encoder of its answer, and return what the engine's codec threads made of it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from ..engine import (
    Engine,
    ErrorCode,
    RequestError,
    ServedModel,
    attribution,
    invalid_parameters,
    not_ready,
    shutting_down,
)
from ..engine.latents import latent_codes
from ..engine.runner import GenerateJob, ReconstructJob, VisualiseJob
from .contract import MODEL_ROUTE_ERRORS, UPLOAD_ROUTE_ERRORS, error_responses, image_responses
from .dispatch import ModelRouteTable, read_json
from .forms import openapi_form, read_form
from .responses import (
    NPY_MEDIA_TYPE,
    attribution_response,
    generation_response,
    model_info,
    reconstruction_response,
    visualisation_response,
)
from .schemas import (
    AttributeForm,
    AttributeResponse,
    GenerateRequest,
    GenerateResponse,
    HealthResponse,
    ModelsResponse,
    ReconstructForm,
    ReconstructResponse,
    VisualiseForm,
    VisualiseResponse,
)
from .serving import engine_of, while_connected

model_routes = ModelRouteTable()
router = APIRouter()
health = APIRouter(tags=["health"])


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


async def _one_image(request: Request, form_type, path: str):
    """The form and its one upload, for the routes that explain one image."""
    form, uploads = await read_form(request, form_type)
    if len(uploads) > 1:
        raise invalid_parameters(f"file: {path} takes one image per request")
    return form, uploads[0]


@model_routes.post(
    "/visualise",
    responses=image_responses(VisualiseResponse, (NPY_MEDIA_TYPE,))
    | error_responses(*UPLOAD_ROUTE_ERRORS),
    openapi_extra=openapi_form(VisualiseForm, "PNG, JPEG or WebP image"),
)
async def visualise(request: Request) -> Response:
    """Project a layer's top-k activations of an image back to pixel space (Zeiler & Fergus)."""
    engine = engine_of(request)
    form, upload = await _one_image(request, VisualiseForm, "/visualise")
    model = _chosen(engine, form.network, "visualise", "network" in form.model_fields_set)
    model.check_visualise(form.layer, form.k, form.channel)

    def encode(vis):
        return visualisation_response(vis, model, form)

    key = ("visualise", form.layer, form.k, form.channel, form.method)
    job = VisualiseJob(upload, encode)
    return await while_connected(request, engine.submit(model, key, job, 1))


@model_routes.post(
    "/attribute",
    responses=image_responses(AttributeResponse, (NPY_MEDIA_TYPE,))
    | error_responses(*UPLOAD_ROUTE_ERRORS),
    openapi_extra=openapi_form(AttributeForm, "PNG, JPEG or WebP image"),
)
async def attribute(request: Request) -> Response:
    """Show which pixels made a classifier's logit for a class (Grad-CAM, IG, occlusion...)."""
    engine = engine_of(request)
    form, upload = await _one_image(request, AttributeForm, "/attribute")
    model = _chosen(engine, form.network, "attribute", "network" in form.model_fields_set)
    fields = form.model_dump(exclude={"network", "format"})
    wanted = attribution.resolve(model, attribution.AttributionRequest(**fields))

    def encode(result):
        return attribution_response(result, model, form.format)

    work = attribution.attribute(engine, model, upload, wanted, encode)
    return await while_connected(request, work)


@model_routes.post(
    "/reconstruct",
    responses=image_responses(ReconstructResponse, ()) | error_responses(*UPLOAD_ROUTE_ERRORS),
    openapi_extra=openapi_form(ReconstructForm, "One or more images (repeat the field)", many=True),
)
async def reconstruct(request: Request) -> Response:
    """Reconstruct uploaded images with an auto-encoder or a VAE."""
    engine = engine_of(request)
    form, uploads = await read_form(request, ReconstructForm)
    model = _chosen(engine, form.model, "reconstruct", "model" in form.model_fields_set)
    max_files = engine.settings.max_files
    if len(uploads) > max_files:
        raise RequestError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"{len(uploads)} files is more than UNCONV_MAX_FILES={max_files}; send fewer",
        )
    job = ReconstructJob(uploads, lambda out: reconstruction_response(out, model, form.format))
    return await while_connected(request, engine.submit(model, ("reconstruct",), job, len(uploads)))


@model_routes.post(
    "/generate",
    body=GenerateRequest,
    responses=image_responses(GenerateResponse, (NPY_MEDIA_TYPE,))
    | error_responses(*MODEL_ROUTE_ERRORS),
)
async def generate(request: Request) -> Response:
    """Generate new images with a VAE's decoder: from the prior, given latents, or a line."""
    body = await read_json(request, GenerateRequest)
    engine = engine_of(request)
    model = _chosen(engine, body.model, "generate", "model" in body.model_fields_set)
    z, seed = latent_codes(body, model.latent_size, model.prior, model.labels)
    pixel_temperature = model.pixel_temperature_for(body.pixel_temperature)

    def encode(images) -> Response:
        return generation_response(images, z, seed, model, body.format)

    job = GenerateJob(z, encode, pixel_temperature)
    return await while_connected(request, engine.submit(model, ("generate",), job, len(z)))


@router.get(
    "/models",
    tags=["models"],
    response_model=ModelsResponse,
    responses=error_responses(401, 500),
)
async def models(request: Request) -> ModelsResponse:
    """Every servable model and network, whether it is available, and why not."""
    engine = engine_of(request)
    return ModelsResponse(models=[model_info(m) for m in engine.models.values()])


@health.get("/healthz", response_model=HealthResponse)
@health.get("/v2/health/live", response_model=HealthResponse, include_in_schema=False)
async def live() -> HealthResponse:
    """Liveness: the process answers."""
    return HealthResponse(status="ok")


@health.get("/readyz", response_model=HealthResponse, responses=error_responses(503))
@health.get("/v2/health/ready", response_model=HealthResponse, include_in_schema=False)
async def ready(request: Request) -> HealthResponse:
    """Readiness: every available model is loaded and the service is not shutting down."""
    engine = engine_of(request)
    if engine.closing:
        raise shutting_down()
    if not engine.serving:  # this worker's models, every other's
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
    ready = engine_of(request).serving
    return Response(request.app.state.metrics.render(ready), media_type=CONTENT_TYPE_LATEST)
