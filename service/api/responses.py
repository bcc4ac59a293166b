"""Engine results to HTTP responses in the format the client asked for. The encoders run in the
engine's codec threads (each job carries one), never on the event loop."""

from __future__ import annotations

import base64

import torch
from fastapi.responses import Response

from ..engine import ModelState, ServedModel, Visualisation
from ..engine.attribution import DEFAULT_STEPS, Attribution
from ..engine.imaging import (
    attribution_to_image,
    encode_npy,
    encode_png,
    grid,
    projection_to_image,
)
from ..engine.runner import Reconstruction
from .schemas import (
    AttributeResponse,
    AttributionDefaults,
    GeneratedImage,
    GenerateResponse,
    KeptActivation,
    ModelInfo,
    RankedClass,
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


def attribution_response(result: Attribution, model: ServedModel, fmt: str) -> Response:
    if fmt == "npy":
        return Response(encode_npy(result.attribution), media_type=NPY_MEDIA_TYPE)
    pixels = model.image_spec.normalisation.denormalise(result.image[None])[0]
    png = encode_png(attribution_to_image(pixels, result.attribution))
    if fmt == "png":
        return Response(png, media_type="image/png")
    request = result.request
    cams = request.method in ("gradcam", "guided_gradcam")
    probabilities = torch.softmax(result.logits.double(), dim=0)
    top = probabilities.topk(min(5, len(probabilities))).indices.tolist()
    return _json(
        AttributeResponse(
            network=model.name,
            method=request.method,
            target=result.target,
            predicted=int(result.logits.argmax()),
            top=[
                RankedClass(index=i, probability=probabilities[i], logit=result.logits[i])
                for i in top
            ],
            layer=request.layer if cams else None,
            layer_name=model.deconv.layer_name(request.layer) if cams else None,
            steps=request.steps if request.method == "integrated_gradients" else None,
            window=request.window if request.method == "occlusion" else None,
            stride=request.stride if request.method == "occlusion" else None,
            input_shape=list(model.image_spec.shape),
            attribution_shape=list(result.attribution.shape),
            image_png=base64.b64encode(png).decode("ascii"),
        )
    )


def _attribution_defaults(model: ServedModel) -> AttributionDefaults | None:
    net = model.classifier
    if net is None:
        return None
    occlusion = model.occlusion_defaults
    return AttributionDefaults(
        layer=net.last_convolution(),
        layers=net.feature_layers,
        classes=net.num_classes,
        steps=DEFAULT_STEPS,
        window=occlusion.window,
        stride=occlusion.stride,
        min_stride=occlusion.min_stride,
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
        pixel_temperature=model.pixel_temperature,
        assumption=model.checkpoint.assumption if model.checkpoint else None,
        attribution=_attribution_defaults(model),
        metadata=model.metadata,
    )
