"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from ..engine import DEFAULT_K, DEFAULT_METHOD
from ..engine.attribution import DEFAULT_STEPS, MAX_STEPS

MAX_GENERATE = 256
MAX_TEMPERATURE = 2.0
MAX_LABEL = 999  # the largest label index a request may name; a model's own range is checked

ImageFormat = Literal["png", "json", "npy"]
# service.engine.METHODS, spelt out for the OpenAPI document (a test keeps the two equal)
VisualiseMethod = Literal["deconvnet", "guided_backprop", "saliency"]
# service.engine.attribution.METHODS, likewise
AttributeMethod = Literal["gradcam", "guided_gradcam", "integrated_gradients", "occlusion"]


def _json_integer(value: Any) -> Any:
    """JSON Schema's integer: 3 and 3.0, but not `true` or "3" (forms, being text, are lax)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


def _json_number(value: Any) -> Any:
    """A JSON number: not `true` or "0.5"."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PydanticCustomError("float_type", "Input should be a valid number")
    return value


Temperature = Annotated[
    float,
    Field(ge=0, le=MAX_TEMPERATURE, allow_inf_nan=False),
    BeforeValidator(_json_number),
]
# below this, float32 logits divided by it could overflow to inf - inf = nan
PixelTemperature = Annotated[
    float,
    Field(ge=0.01, le=MAX_TEMPERATURE, allow_inf_nan=False),
    BeforeValidator(_json_number),
]
JsonInt = Annotated[int, BeforeValidator(_json_integer)]
# JSON numbers are strict: `true` and "1" are not numbers
LatentMean = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-1e4, le=1e4)]
LatentLogVar = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-30, le=30)]
# one latent vector; its length must be the model's latent size (GET /models: latent_size)
MeanVector = Annotated[list[LatentMean], Field(min_length=1)]
LogVarVector = Annotated[list[LatentLogVar], Field(min_length=1)]


class ErrorResponse(BaseModel):
    """Every error the service returns."""

    error: str = Field(description="Stable machine-readable code, e.g. `invalid_image`")
    detail: str = Field(description="What was wrong and how to fix it")


class VisualiseForm(BaseModel):
    """The form fields of /visualise, next to the image in `file`."""

    model_config = ConfigDict(extra="forbid")

    layer: int = Field(
        ge=1, description="1-based layer of the feature stack (GET /models lists them)"
    )
    network: str = Field(
        "alexnet", description="alexnet, vgg16 or a classifier checkpoint such as cnn"
    )
    k: int = Field(DEFAULT_K, ge=1, description="Activations to keep")
    channel: int | None = Field(None, ge=0, description="Keep the top-k of this feature map only")
    method: VisualiseMethod = Field(
        DEFAULT_METHOD,
        description="How each ReLU passes the signal back: deconvnet (Zeiler & Fergus: "
        "rectify it), saliency (the signed gradient: mask by the forward input) or "
        "guided_backprop (both); docs/methods.md",
    )
    format: ImageFormat = Field(
        "png",
        description="png: viewable projection; json: PNG plus kept activations; "
        "npy: raw float32 (C, H, W)",
    )


class AttributeForm(BaseModel):
    """The form fields of /attribute, next to the image in `file`."""

    model_config = ConfigDict(extra="forbid")

    network: str = Field(
        "alexnet", description="alexnet, vgg16 or a classifier checkpoint such as cnn"
    )
    method: AttributeMethod = Field(
        "gradcam",
        description="gradcam (Selvaraju et al.), guided_gradcam (guided backpropagation times "
        "Grad-CAM), integrated_gradients (Sundararajan et al.) or occlusion (Zeiler & Fergus); "
        "docs/methods.md",
    )
    target: int | None = Field(
        None, ge=0, description="The class whose logit is explained; by default the predicted"
    )
    layer: int | None = Field(
        None,
        ge=1,
        description="gradcam and guided_gradcam: the 1-based feature layer whose output is "
        "weighted; by default the last convolution's ReLU (GET /models: attribution.layer)",
    )
    steps: int = Field(
        DEFAULT_STEPS,
        ge=1,
        le=MAX_STEPS,
        description="integrated_gradients: points of the Gauss-Legendre quadrature (passes)",
    )
    window: int | None = Field(
        None,
        ge=1,
        description="occlusion: the side of the square of zeros, in input pixels; by default "
        "the network's (GET /models: attribution.window)",
    )
    stride: int | None = Field(
        None,
        ge=1,
        description="occlusion: the window's step, in input pixels; by default the network's "
        "(GET /models: attribution.stride, at least attribution.min_stride)",
    )
    format: ImageFormat = Field(
        "png",
        description="png: the map over the input; json: that PNG, the target, the predicted "
        "class and the top 5; npy: the map as float32, (1, H, W) for gradcam and occlusion, "
        "(C, H, W) for the other two",
    )


class ReconstructForm(BaseModel):
    """The form fields of /reconstruct, next to the images in `file`."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("ae", description="An auto-encoder or VAE checkpoint")
    format: Literal["png", "json"] = Field(
        "png",
        description="png: the reconstruction (a grid in input order for several files); "
        "json: base64 PNGs, and a VAE's latent mean and log variance",
    )


class KeptActivation(BaseModel):
    """One activation kept for the projection, at (channel, y, x) of the layer's output."""

    channel: int
    y: int
    x: int
    value: float


class VisualiseResponse(BaseModel):
    """`format=json` answer of /visualise."""

    network: str
    layer: int
    layer_name: str
    k: int
    channel: int | None
    method: VisualiseMethod
    input_shape: list[int] = Field(description="(C, H, W) of the network input")
    activation_shape: list[int] = Field(description="(C, h, w) of the layer's output")
    image_png: str = Field(description="Base64 PNG of the projection; zero is mid-grey")
    activations: list[KeptActivation] = Field(description="Kept activations, strongest first")


class RankedClass(BaseModel):
    """One class of the network's answer for the image."""

    index: int
    probability: float = Field(description="Softmax of the logits")
    logit: float


class AttributeResponse(BaseModel):
    """`format=json` answer of /attribute."""

    network: str
    method: AttributeMethod
    target: int = Field(description="The class whose logit the map explains")
    predicted: int = Field(description="The class with the largest logit")
    top: list[RankedClass] = Field(description="The five most probable classes, most first")
    layer: int | None = Field(None, description="gradcam and guided_gradcam")
    layer_name: str | None = None
    steps: int | None = Field(None, description="integrated_gradients")
    window: int | None = Field(None, description="occlusion")
    stride: int | None = Field(None, description="occlusion")
    input_shape: list[int] = Field(description="(C, H, W) of the network input")
    attribution_shape: list[int] = Field(description="Shape of the map (format=npy)")
    image_png: str = Field(description="Base64 PNG of the map over the input")


class AttributionDefaults(BaseModel):
    """/attribute's defaults for one network."""

    layer: int = Field(description="Grad-CAM's layer: the last convolution's ReLU")
    layers: int = Field(description="Feature layers: `layer` may be 1 to this")
    classes: int = Field(description="`target` may be 0 to this minus one")
    steps: int
    window: int
    stride: int
    min_stride: int = Field(description="The least stride (at most 1024 occlusions)")


class ReconstructedImage(BaseModel):
    image_png: str = Field(description="Base64 PNG of the reconstruction")
    mean: list[float] | None = Field(None, description="VAE only: latent mean")
    log_var: list[float] | None = Field(None, description="VAE only: latent log-variance")


class ReconstructResponse(BaseModel):
    """`format=json` answer of /reconstruct, one entry per uploaded file in order."""

    model: str
    kind: str
    assumption: str
    images: list[ReconstructedImage]


class Interpolation(BaseModel):
    """A straight line between two latent points, decoded at evenly spaced steps."""

    model_config = ConfigDict(extra="forbid")

    start: MeanVector
    end: MeanVector
    steps: JsonInt = Field(8, ge=2, le=MAX_GENERATE)


class GenerateRequest(BaseModel):
    """Body of /generate.

    Without `mean` and `interpolate`, `n` latent codes are sampled from the prior. `mean` and
    `log_var` give one latent Gaussian per image (a single vector is repeated `n` times).
    `interpolate` decodes the points of a line and draws no noise. `label` (or `labels`, one per
    image) samples from the prior of that class, for a model that lists `labels` in /models.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"model": "vae", "n": 16, "seed": 7, "format": "png"}]},
    )

    model: str = "vae"
    n: JsonInt = Field(8, ge=1, le=MAX_GENERATE, description="Number of images")
    seed: Annotated[int, Field(ge=0, lt=2**63), BeforeValidator(_json_integer)] | None = Field(
        None,
        description="Same seed and inputs give the same images; when absent one is drawn "
        "and returned (JSON) or sent in the X-Seed header",
    )
    mean: list[MeanVector] | None = Field(
        None, min_length=1, max_length=MAX_GENERATE, description="Latent means: 1 or n vectors"
    )
    log_var: list[LogVarVector] | None = Field(
        None, min_length=1, max_length=MAX_GENERATE, description="Latent log-variances: 1 or n"
    )
    interpolate: Interpolation | None = None
    label: int | None = Field(
        None,
        ge=0,
        le=MAX_LABEL,
        description="Sample every image from the prior of this class: an index into the "
        "model's `labels` in /models (MNIST: digit d is label d)",
    )
    labels: list[Annotated[int, Field(ge=0, le=MAX_LABEL)]] | None = Field(
        None,
        min_length=1,
        max_length=MAX_GENERATE,
        description="One class index per image, instead of `label`; sets `n`",
    )
    temperature: Temperature | None = Field(
        None,
        description="Scale of the prior's noise: lower gives more typical images, higher more "
        "varied ones; by default the model's own (`temperature` in /models). Prior samples "
        "only: not with `mean`, `log_var` or `interpolate`",
    )
    pixel_temperature: PixelTemperature | None = Field(
        None,
        description="Temperature of the pixels: each is the mean of its Bernoulli tempered to "
        "p^(1/T) / (p^(1/T) + (1-p)^(1/T)); below 1 sharper strokes, 1 the decoder's plain mean; "
        "by default the model's own (`pixel_temperature` in /models). Models whose "
        "`assumption` is binomial or binary only",
    )
    format: ImageFormat = "png"

    @model_validator(mode="after")
    def _temperature_for_prior_samples(self):
        given = (self.interpolate, self.mean, self.log_var) != (None, None, None)
        if self.temperature is not None and given:
            raise ValueError(
                "temperature scales prior samples: give no mean, log_var or interpolate"
            )
        return self

    @model_validator(mode="after")
    def _consistent_labels(self):
        if self.label is None and self.labels is None:
            return self
        if (self.interpolate, self.mean, self.log_var) != (None, None, None):
            raise ValueError(
                "label/labels sample from the prior: give no mean, log_var or interpolate"
            )
        if self.label is not None and self.labels is not None:
            raise ValueError("give either label or labels, not both")
        if self.labels is not None:
            if "n" in self.model_fields_set and self.n != len(self.labels):
                raise ValueError(f"n={self.n} but labels holds {len(self.labels)} labels")
            self.n = len(self.labels)
        return self

    @model_validator(mode="after")
    def _consistent(self):
        if self.interpolate is not None:
            if self.mean is not None or self.log_var is not None:
                raise ValueError("give either interpolate or mean/log_var, not both")
            self.n = self.interpolate.steps
            return self
        counts = {len(rows) for rows in (self.mean, self.log_var) if rows and len(rows) > 1}
        if len(counts) > 1:
            raise ValueError(f"mean and log_var have different numbers of vectors: {counts}")
        if counts:
            count = counts.pop()
            if "n" in self.model_fields_set and self.n != count:
                raise ValueError(f"n={self.n} but mean/log_var hold {count} vectors")
            self.n = count
        return self


class GeneratedImage(BaseModel):
    image_png: str = Field(description="Base64 PNG of the generated image")
    z: list[float] = Field(description="The latent code that was decoded")


class GenerateResponse(BaseModel):
    """`format=json` answer of /generate."""

    model: str
    seed: int
    images: list[GeneratedImage]


class ModelInfo(BaseModel):
    """One servable model or network."""

    name: str
    kind: Literal["autoencoder", "vae", "classifier", "network", "unknown"]
    endpoints: list[str] = Field(description="Routes that accept this model")
    available: bool
    reason: str | None = Field(None, description="Why it is unavailable and how to fix it")
    input_shape: list[int] | None = None
    latent_size: int | None = None
    layers: list[str] | None = Field(None, description="/visualise layers, 1-based, by name")
    labels: list[str] | None = Field(
        None,
        description="Classes /generate can be asked for with `label` (their indices), in "
        "order; absent when the model has none",
    )
    temperature: float | None = Field(
        None, description="The default `temperature` of /generate's prior samples (VAEs)"
    )
    pixel_temperature: float | None = Field(
        None, description="The default `pixel_temperature` of /generate's images (VAEs)"
    )
    assumption: str | None = None
    attribution: AttributionDefaults | None = Field(
        None, description="/attribute's defaults and ranges, for classifiers"
    )
    metadata: dict[str, Any] = Field(default_factory=dict)


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class HealthResponse(BaseModel):
    status: Literal["ok"]
    models_loaded: int | None = None
    models_unavailable: int | None = None
