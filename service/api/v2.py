"""The Open Inference Protocol (KServe v2) over the same engine as the native routes: server
and model metadata, model readiness and inference, with the binary tensor data extension.

Tensors (each model's ``GET /v2/models/{name}`` lists its own; ``-1``: any size):

- every model takes ``image``, FP32 ``[-1, C, H, W]`` intensities in [0, 1] (a PNG's pixels
  divided by 255); the service applies the model's own normalisation, as it does to uploads;
- an auto-encoder answers ``reconstruction`` ``[-1, C, H, W]``; a VAE also ``mean`` and
  ``log_var`` ``[-1, D]`` (the reconstruction decodes the mean, as ``/reconstruct`` does);
- a VAE given ``z`` (FP32 ``[-1, D]``) instead decodes it; given no input it samples
  (``parameters``: ``n``, ``seed``, ``label``, as ``/generate``); both answer ``generated``
  ``[-1, C, H, W]`` and ``z``, and sampling answers the seed in the response's parameters;
- a network or classifier (``parameters``: ``layer``, required, ``k``, ``channel``, ``method``
  as ``/visualise``) answers
  ``projection`` ``[-1, C, H, W]``, the kept activations' positions ``activations`` (INT64
  ``[-1, k, 3]``: channel, y, x) and their values ``activation_values`` (FP32 ``[-1, k]``).

Requests join the native routes' batches (the same engine, batcher keys and limits); errors
under ``/v2/`` are ``{"error": "<message>", "code": "<stable code>"}``.
"""

from __future__ import annotations

import asyncio

import numpy as np
import torch
from fastapi import APIRouter, Request
from fastapi.responses import Response

from .. import __version__
from ..engine import (
    DEFAULT_K,
    DEFAULT_METHOD,
    METHODS,
    Engine,
    ErrorCode,
    RequestError,
    ServedModel,
)
from ..engine.imaging import Pixels
from ..engine.latents import latent_codes
from ..engine.runner import GenerateJob, ReconstructJob, VisualiseJob
from .contract import error_responses
from .schemas import MAX_GENERATE, MAX_LABEL, GenerateRequest
from .serving import engine_of, while_connected
from .v2_codec import (
    HEADER_LENGTH,
    InferRequest,
    TensorSpec,
    bad_request,
    encode_response,
    integral,
)
from .v2_codec import parse_request as parse_infer_request
from .v2_schemas import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    ModelReady,
    ServerMetadata,
    V2ErrorResponse,
    inline_schema,
)

VERSION = "1"  # one version per name: loading a model again replaces it
EXTENSIONS = ["binary_tensor_data", "model_repository"]
server = APIRouter(tags=["v2"])
router = APIRouter(tags=["v2"])


def signature(model: ServedModel) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """A loaded model's inputs and outputs."""
    c, h, w = model.image_spec.shape
    images = (-1, c, h, w)
    image = TensorSpec("image", "FP32", images, "intensities in [0, 1]")
    if model.kind in ("network", "classifier"):
        return [image], [
            TensorSpec("projection", "FP32", images),
            TensorSpec("activations", "INT64", (-1, -1, 3), "channel, y, x of each kept one"),
            TensorSpec("activation_values", "FP32", (-1, -1)),
        ]
    outputs = [TensorSpec("reconstruction", "FP32", images)]
    if model.kind != "vae":
        return [image], outputs
    latent = (-1, model.latent_size)
    return [image, TensorSpec("z", "FP32", latent, "latent codes to decode")], [
        *outputs,
        TensorSpec("mean", "FP32", latent),
        TensorSpec("log_var", "FP32", latent),
        TensorSpec("generated", "FP32", images),
        TensorSpec("z", "FP32", latent),
    ]


def served(engine: Engine, name: str, version: str | None = None) -> ServedModel:
    """The loaded model ``name`` (``Engine.model``), or the protocol's 404 or 503."""
    try:
        model = engine.model(name)
    except RequestError as err:
        if err.code is ErrorCode.UNKNOWN_MODEL:
            raise RequestError(
                ErrorCode.UNKNOWN_MODEL,
                f"no model {name!r}; the service has {sorted(engine.models)} "
                "(POST /v2/repository/index lists them with their state)",
            ) from None
        if err.code is ErrorCode.MODEL_UNAVAILABLE:  # Triton: a model that is not loaded
            raise RequestError(
                ErrorCode.MODEL_NOT_LOADED,
                f"model {name!r} is not loaded: {engine.models[name].reason}",
            ) from None
        raise
    if version not in (None, VERSION):
        raise RequestError(
            ErrorCode.UNKNOWN_MODEL, f"model {name!r} has no version {version!r}, only {VERSION!r}"
        )
    return model


# -- parameters ----------------------------------------------------------------------------


def _integer(parameters: dict, name: str, low: int, high: int, default: int | None = None):
    value = integral(parameters.get(name))
    if value is None:  # absent or null: the default
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise bad_request(
            f"parameter {name}: expected an integer from {low} to {high} but received {value!r}"
        )
    return value


def _only(parameters: dict, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(parameters) - set(allowed))
    if unknown:
        raise bad_request(f"unknown parameters {unknown}; this request takes {list(allowed)}")


def _images(request: InferRequest, engine: Engine) -> torch.Tensor:
    """The ``image`` input as a tensor, checked: intensities in [0, 1], at most
    UNCONV_MAX_FILES images."""
    images = torch.from_numpy(request.inputs["image"])
    if not bool(((images >= 0) & (images <= 1)).all()):
        raise bad_request("input 'image': expected intensities in [0, 1] (pixels / 255)")
    limit = engine.settings.max_files
    if len(images) > limit:
        raise RequestError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"{len(images)} images is more than UNCONV_MAX_FILES={limit}; send fewer",
        )
    return images


# -- inference by kind -----------------------------------------------------------------------


async def _reconstruct(engine: Engine, model: ServedModel, request: InferRequest, http):
    _only(request.parameters, ())
    if "image" not in request.inputs:
        raise bad_request("input 'image' is required")
    images = _images(request, engine)

    def encode(out) -> dict:
        produced = {"reconstruction": ("FP32", out.images.numpy())}
        if out.mean is not None:
            produced["mean"] = ("FP32", out.mean.numpy())
            produced["log_var"] = ("FP32", out.log_var.numpy())
        return produced

    job = ReconstructJob([Pixels(images)], encode)
    produced = await while_connected(http, engine.submit(model, ("reconstruct",), job, len(images)))
    return produced, {}


async def _generate(engine: Engine, model: ServedModel, request: InferRequest, http):
    if "z" in request.inputs:
        _only(request.parameters, ())
        z = torch.from_numpy(request.inputs["z"])
        if not bool((z.abs() <= 1e4).all()):  # NaN fails too
            raise bad_request("input 'z': expected finite values from -1e4 to 1e4")
        seed = None
    else:
        _only(request.parameters, ("n", "seed", "label"))
        p = request.parameters
        body = GenerateRequest(
            model=model.name,
            n=_integer(p, "n", 1, MAX_GENERATE, 1),
            seed=_integer(p, "seed", 0, 2**63 - 1),
            label=_integer(p, "label", 0, MAX_LABEL),
        )
        z, seed = latent_codes(body, model.latent_size, model.prior, model.labels)
    if len(z) > MAX_GENERATE:
        raise RequestError(
            ErrorCode.PAYLOAD_TOO_LARGE, f"{len(z)} codes is more than {MAX_GENERATE}; send fewer"
        )

    def encode(images: torch.Tensor) -> dict:
        return {"generated": ("FP32", images.numpy()), "z": ("FP32", z.numpy())}

    job = GenerateJob(z, encode, model.pixel_temperature)
    produced = await while_connected(http, engine.submit(model, ("generate",), job, len(z)))
    return produced, ({} if seed is None else {"seed": seed})


async def _vae(engine: Engine, model: ServedModel, request: InferRequest, http):
    if "image" in request.inputs and "z" in request.inputs:
        raise bad_request("give either 'image' (to reconstruct) or 'z' (to decode), not both")
    if "image" in request.inputs:
        return await _reconstruct(engine, model, request, http)
    return await _generate(engine, model, request, http)


async def _visualise(engine: Engine, model: ServedModel, request: InferRequest, http):
    if "image" not in request.inputs:
        raise bad_request("input 'image' is required")
    p = request.parameters
    _only(p, ("layer", "k", "channel", "method"))
    if p.get("layer") is None:
        raise bad_request(f"parameter layer is required: 1 to {len(model.layer_shapes)}")
    layer = _integer(p, "layer", 1, len(model.layer_shapes))
    k = _integer(p, "k", 1, 2**31, DEFAULT_K)
    channel = _integer(p, "channel", 0, 2**31)
    method = DEFAULT_METHOD if p.get("method") is None else p["method"]
    if method not in METHODS:
        raise bad_request(
            f"parameter method: expected one of {list(METHODS)} but received {method!r}"
        )
    model.check_visualise(layer, k, channel)
    images = _images(request, engine)

    def encode(vis) -> tuple:
        kept = torch.stack([vis.channel[0], vis.y[0], vis.x[0]], dim=-1)  # (k, 3)
        return vis.projection.numpy(), kept.numpy(), vis.value.numpy()

    jobs = [VisualiseJob(Pixels(image[None]), encode) for image in images]
    key = ("visualise", layer, k, channel, method)  # as /visualise's: they batch together
    # one job per image (the engine's visualise jobs take one each), under one key: one batch
    each = asyncio.gather(*(engine.submit(model, key, job, 1) for job in jobs))
    answers = await while_connected(http, each)
    projection, kept, values = (np.concatenate(parts) for parts in zip(*answers, strict=True))
    produced = {
        "projection": ("FP32", projection),
        "activations": ("INT64", kept.reshape(len(jobs), -1, 3)),
        "activation_values": ("FP32", values),
    }
    return produced, {}


INFER = {
    "autoencoder": _reconstruct,
    "vae": _vae,
    "classifier": _visualise,
    "network": _visualise,
}

# -- routes --------------------------------------------------------------------------------

_V2_ERRORS = error_responses(400, 401, 404, 413, 499, 500, 503, 504)
for _status in _V2_ERRORS:
    _V2_ERRORS[_status]["model"] = V2ErrorResponse


@server.get("/v2", response_model=ServerMetadata)
async def server_metadata() -> ServerMetadata:
    """Server metadata of the Open Inference Protocol: name, version and extensions."""
    return ServerMetadata(name="unconv", version=__version__, extensions=EXTENSIONS)


def metadata(model: ServedModel) -> ModelMetadata:
    inputs, outputs = signature(model)
    return ModelMetadata(
        name=model.name,
        versions=[VERSION],
        platform="pytorch",
        inputs=[spec.metadata() for spec in inputs],
        outputs=[spec.metadata() for spec in outputs],
        parameters={"kind": model.kind, **model.metadata},
    )


@router.get(
    "/v2/models/{name}",
    response_model=ModelMetadata,
    responses=_V2_ERRORS,
)
@router.get(
    "/v2/models/{name}/versions/{version}",
    response_model=ModelMetadata,
    responses=_V2_ERRORS,
)
async def model_metadata(name: str, request: Request, version: str | None = None):
    """A model's inputs and outputs: names, datatypes and shapes (-1: any size)."""
    return metadata(served(engine_of(request), name, version))


@router.get("/v2/models/{name}/ready", response_model=ModelReady, responses=_V2_ERRORS)
@router.get(
    "/v2/models/{name}/versions/{version}/ready", response_model=ModelReady, responses=_V2_ERRORS
)
async def model_ready(name: str, request: Request, version: str | None = None) -> ModelReady:
    """200 once the model is loaded and serving; 404 unknown, 503 loading or unavailable."""
    served(engine_of(request), name, version)
    return ModelReady(name=name, ready=True)


_INFER_DOC = {
    "requestBody": {
        "required": True,
        "description": f"JSON, or JSON then binary tensor data ({HEADER_LENGTH} says where)",
        "content": {"application/json": {"schema": inline_schema(InferenceRequest)}},
    }
}


async def _infer(name: str, request: Request, version: str | None) -> Response:
    engine = engine_of(request)
    model = served(engine, name, version)
    body = await request.body()
    inputs, _ = signature(model)
    header = request.headers.get(HEADER_LENGTH)
    parsed = parse_infer_request(body, header, {spec.name: spec for spec in inputs})
    try:
        produced, parameters = await INFER[model.kind](engine, model, parsed, request)
    except RequestError as err:
        if err.code is ErrorCode.INVALID_PARAMETERS:  # the native routes' 422 is the protocol's 400
            raise bad_request(err.detail) from None
        raise
    content, headers = encode_response(name, VERSION, parsed, produced, parameters)
    return Response(content, headers=headers)


_INFER_ROUTE = {
    "response_class": Response,
    "responses": {
        200: {
            "model": InferenceResponse,
            "description": "JSON, or JSON then binary "
            f"tensor data when an output asks for binary_data ({HEADER_LENGTH} says where)",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    }
    | _V2_ERRORS,
    "openapi_extra": _INFER_DOC,
}


@router.post("/v2/models/{name}/infer", **_INFER_ROUTE)
async def infer(name: str, request: Request) -> Response:
    """Run a model on tensors (Open Inference Protocol; binary tensor data extension)."""
    return await _infer(name, request, None)


@router.post("/v2/models/{name}/versions/{version}/infer", **_INFER_ROUTE)
async def infer_version(name: str, version: str, request: Request) -> Response:
    """Run a version of a model on tensors (there is one version, "1")."""
    return await _infer(name, request, version)
