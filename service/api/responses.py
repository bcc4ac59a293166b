"""Engine results to HTTP responses in the format the client asked for. The encoders run in the
engine's codec threads (each job carries one), never on the event loop."""

from __future__ import annotations

import base64

import torch
from fastapi.responses import Response

from ..engine import ModelState, ServedModel, Visualisation
from ..engine.imaging import encode_npy, encode_png, grid, projection_to_image
from ..engine.runner import Reconstruction
from .schemas import (
    GeneratedImage,
    GenerateResponse,
    KeptActivation,
    ModelInfo,
    ReconstructedImage,
    ReconstructResponse,
    VisualiseForm,
    VisualiseResponse,
)

NPY_MEDIA_TYPE = "application/x-npy"


def _b64png(image: torch.Tensor) -> str:
    return base64.b64encode(encode_png(image)).decode("ascii")


def _json(model) -> Response:
    return Response(model.model_dump_json(), media_type="application/json")


def visualisation_response(vis: Visualisation, model: ServedModel, form: VisualiseForm) -> Response:
    projection = vis.projection[0]  # (C, H, W)
    if form.format == "npy":
        return Response(encode_npy(projection), media_type=NPY_MEDIA_TYPE)
    png = encode_png(projection_to_image(projection))
    if form.format == "png":
        return Response(png, media_type="image/png")
    kept = zip(
        vis.channel[0].tolist(),
        vis.y[0].tolist(),
        vis.x[0].tolist(),
        vis.value[0].tolist(),
        strict=True,
    )
    return _json(
        VisualiseResponse(
            network=model.name,
            layer=form.layer,
            layer_name=model.deconv.layer_name(form.layer),
            k=form.k,
            channel=form.channel,
            method=form.method,
            input_shape=list(model.image_spec.shape),
            activation_shape=list(vis.activation_shape),
            image_png=base64.b64encode(png).decode("ascii"),
            activations=[KeptActivation(channel=c, y=y, x=x, value=v) for c, y, x, v in kept],
        )
    )


def reconstruction_response(result: Reconstruction, model: ServedModel, fmt: str) -> Response:
    if fmt == "png":
        return Response(encode_png(grid(result.images)), media_type="image/png")
    images = []
    for i, image in enumerate(result.images):
        latent = {}
        if result.mean is not None:
            latent = {"mean": result.mean[i].tolist(), "log_var": result.log_var[i].tolist()}
        images.append(ReconstructedImage(image_png=_b64png(image), **latent))
    return _json(
        ReconstructResponse(
            model=model.name, kind=model.kind, assumption=model.checkpoint.assumption, images=images
        )
    )


def generation_response(
    images: torch.Tensor, z: torch.Tensor, seed: int, model: ServedModel, fmt: str
) -> Response:
    headers = {"X-Seed": str(seed)}
    if fmt == "npy":
        return Response(encode_npy(images), media_type=NPY_MEDIA_TYPE, headers=headers)
    if fmt == "png":
        return Response(encode_png(grid(images)), media_type="image/png", headers=headers)
    items = [
        GeneratedImage(image_png=_b64png(i), z=c.tolist()) for i, c in zip(images, z, strict=True)
    ]
    response = _json(GenerateResponse(model=model.name, seed=seed, images=items))
    response.headers.update(headers)
    return response


def model_info(model: ServedModel) -> ModelInfo:
    """A served model as ``GET /models`` lists it."""
    return ModelInfo(
        name=model.name,
        kind=model.kind,
        endpoints=model.endpoints,
        available=model.available,
        reason="still loading" if model.state is ModelState.LOADING else model.reason,
        input_shape=list(model.image_spec.shape) if model.image_spec else None,
        latent_size=model.latent_size,
        layers=model.layer_names,
        labels=model.labels,
        temperature=model.temperature,
        assumption=model.checkpoint.assumption if model.checkpoint else None,
        metadata=model.metadata,
    )
