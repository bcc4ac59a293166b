"""The models the service serves: checkpoints from the checkpoint directory and torchvision
networks, each either loaded or unavailable with the reason and the fix."""

from __future__ import annotations

import copy
import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path

import torch

from ..models import (
    CONFIGS,
    TORCHVISION_NETWORKS,
    Checkpoint,
    CheckpointError,
    LabelPrior,
    OcclusionDefaults,
    UndoableClassifier,
    UndoableSequential,
    WeightsUnavailable,
    candidate_count,
    load_checkpoint,
    load_torchvision_network,
    read_checkpoint_json,
)
from ..settings import Settings
from .errors import invalid_parameters
from .imaging import ImageSpec

log = logging.getLogger("unconv")

ENDPOINTS = {
    "autoencoder": ["reconstruct"],
    "vae": ["reconstruct", "generate"],
    "classifier": ["visualise", "attribute"],
    "network": ["visualise", "attribute"],
}
_RETRAIN = {"autoencoder": "ae", "vae": "vae", "classifier": "cnn"}


class ModelState(Enum):
    """Where a served model is in its life: loading at start-up, then one of the other two."""

    LOADING = "loading"
    AVAILABLE = "available"
    UNAVAILABLE = "unavailable"


@dataclass
class ServedModel:
    """One servable model, before and after loading; ``reason`` says why it is unavailable."""

    name: str
    kind: str
    path: Path | None = None
    state: ModelState = ModelState.LOADING
    reason: str | None = None
    checkpoint: Checkpoint | None = None
    deconv: UndoableSequential | None = None
    # the whole classifier, sharing the feature stack's modules with ``deconv``
    classifier: UndoableClassifier | None = None
    layer_shapes: list[tuple[int, int, int]] = field(default_factory=list)
    image_spec: ImageSpec | None = None
    metadata: dict = field(default_factory=dict)
    # a VAE's fitted prior, on the CPU where /generate draws codes from each request's seed;
    # None for N(0, I)
    prior: LabelPrior | None = None

    @property
    def available(self) -> bool:
        return self.state is ModelState.AVAILABLE

    def mark_unavailable(self, reason: str) -> None:
        """Mark the model unavailable, with the reason and the fix."""
        self.state, self.reason = ModelState.UNAVAILABLE, reason

    @property
    def endpoints(self) -> list[str]:
        return ENDPOINTS.get(self.kind, [])

    @property
    def labels(self) -> list[str] | None:
        """Names of the classes ``prior`` can be asked for, in index order."""
        if self.prior is None:
            return None
        return list(self.checkpoint.config.labels)

    @property
    def temperature(self) -> float | None:
        """The default temperature of prior samples: the fitted prior's, 1 for N(0, I)."""
        if self.kind != "vae":
            return None
        return self.prior.temperature if self.prior is not None else 1.0

    @property
    def pixel_temperature(self) -> float | None:
        """The default temperature /generate renders pixels at (loaded VAEs; 1: the mean)."""
        if self.kind != "vae" or self.checkpoint is None:
            return None
        return self.checkpoint.model.pixel_temperature

    def pixel_temperature_for(self, asked: float | None) -> float:
        """The pixel temperature of one /generate request: ``asked``, else the model's own;
        ``invalid_parameters`` when a temperature other than 1 is asked of pixels that are not
        Bernoulli."""
        if asked is None:
            return self.pixel_temperature
        if asked != 1 and self.checkpoint.assumption not in ("binomial", "binary"):
            raise invalid_parameters(
                f"pixel_temperature tempers Bernoulli pixels, and model {self.name!r} assumes "
                f"{self.checkpoint.assumption!r}: leave it out or give 1"
            )
        return asked

    @property
    def latent_size(self) -> int | None:
        config = self.checkpoint.config if self.checkpoint else None
        return getattr(config, "latent_features", None) if self.kind == "vae" else None

    @property
    def layer_names(self) -> list[str] | None:
        if self.deconv is None:
            return None
        return [self.deconv.layer_name(i) for i in range(1, len(self.deconv) + 1)]

    def candidates(self, layer: int, channel: int | None) -> int:
        """How many activations of ``layer`` (1-based) a top-k is chosen from: all of them, or
        one feature map's when ``channel`` is given."""
        return candidate_count(self.layer_shapes[layer - 1], channel)

    def check_visualise(self, layer: int, k: int, channel: int | None) -> None:
        """Raise ``invalid_parameters`` unless this network has ``layer`` (1-based), that layer
        has ``channel``, and ``k`` activations to choose from."""
        layers = len(self.layer_shapes)
        if layer > layers:
            raise invalid_parameters(
                f"layer {layer} is out of range: {self.name} has layers 1 to {layers}"
            )
        channels = self.layer_shapes[layer - 1][0]
        if channel is not None and channel >= channels:
            raise invalid_parameters(
                f"channel {channel} is out of range: "
                f"layer {layer} of {self.name} has channels 0 to {channels - 1}"
            )
        candidates = self.candidates(layer, channel)
        if k > candidates:
            raise invalid_parameters(
                f"k={k} is too large: layer {layer} of "
                f"{self.name} has {candidates} activations to choose from"
            )

    @property
    def occlusion_defaults(self) -> OcclusionDefaults | None:
        """/attribute's occlusion window and stride for this classifier's inputs."""
        if self.classifier is None:
            return None
        return OcclusionDefaults.of(self.image_spec.size)


def discover(settings: Settings) -> dict[str, ServedModel]:
    """Every model the settings name, none loaded yet."""
    models: dict[str, ServedModel] = {}
    for name in settings.networks:
        models[name] = ServedModel(name, "network")
        if name not in TORCHVISION_NETWORKS:
            models[name].mark_unavailable(
                f"unknown torchvision network {name!r}; UNCONV_NETWORKS may "
                f"name {sorted(TORCHVISION_NETWORKS)}"
            )
    directory = Path(settings.checkpoint_dir).expanduser()
    for json_path in sorted(directory.glob("*.json")):
        name = json_path.stem
        if name.endswith(".state") or name in models:
            continue
        models[name] = _checkpoint_entry(json_path)
    return models


def rediscover(settings: Settings, name: str) -> ServedModel | None:
    """The model ``name`` as its files are now (not loaded), or None when nothing serves that
    name: no such network in UNCONV_NETWORKS and no ``<name>.json`` checkpoint."""
    if name in settings.networks:
        return discover(settings.model_copy(update={"networks": [name]}))[name]
    json_path = Path(settings.checkpoint_dir).expanduser() / f"{name}.json"
    if name.endswith(".state") or not json_path.is_file():
        return None
    return _checkpoint_entry(json_path)


def _checkpoint_entry(json_path: Path) -> ServedModel:
    name = json_path.stem
    try:
        document = read_checkpoint_json(json_path)
    except CheckpointError as err:
        reason = f"{err}; fix or remove {json_path.name}, or retrain it with python -m training"
        model = ServedModel(name, "unknown", json_path)
        model.mark_unavailable(reason)
        return model
    kind = CONFIGS[document["architecture"]].kind
    metadata = {k: v for k, v in (document.get("metadata") or {}).items() if k != "history"}
    return ServedModel(name, kind, json_path, metadata=metadata)


def _weights_identity(weights: Path) -> dict:
    """A content hash of the weights (sha256, first 16 hex digits) and their file's time."""
    digest = hashlib.sha256()
    with weights.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    modified = datetime.fromtimestamp(weights.stat().st_mtime, UTC)
    return {"sha256": digest.hexdigest()[:16], "weights_modified": modified.isoformat()}


def load(model: ServedModel, settings: Settings, device: torch.device) -> None:
    """Load one model onto ``device``, or record why it is unavailable. Blocking."""
    if model.state is not ModelState.LOADING:
        return
    try:
        if model.kind == "network":
            _load_network(model, settings, device)
        else:
            _load_checkpoint(model, device)
    except WeightsUnavailable as err:
        model.mark_unavailable(str(err))
    except (CheckpointError, OSError, RuntimeError, TypeError, ValueError) as err:
        fix = (
            f"retrain it with `python -m training {_RETRAIN.get(model.kind, 'ae')} "
            f"--name {model.name}`"
            if model.path
            else "check UNCONV_NETWORKS"
        )
        model.mark_unavailable(f"{err}; {fix}")
    else:
        model.state = ModelState.AVAILABLE
    if not model.available:
        log.warning("model %s is unavailable: %s", model.name, model.reason)


def _load_network(model: ServedModel, settings: Settings, device: torch.device) -> None:
    spec = TORCHVISION_NETWORKS[model.name]
    network = load_torchvision_network(
        model.name, allow_download=settings.allow_download, classifier=True
    )
    model.image_spec = ImageSpec(3, spec.input_size, spec.normalisation, spec.resize_size)
    model.metadata = {"weights": f"IMAGENET1K_V1 ({spec.weights_file})", "source": "torchvision"}
    _prepare_deconv(model, network.features, device)
    model.classifier = UndoableClassifier(network.features, network.head).to(device).eval()


def _load_checkpoint(model: ServedModel, device: torch.device) -> None:
    checkpoint = load_checkpoint(model.path, device)
    model.metadata |= _weights_identity(model.path.with_suffix(".safetensors"))
    if device.type == "cpu":
        # faster forward passes for these MNIST-size nets (docs/performance.md); the ImageNet
        # feature stacks stay contiguous, where channels-last slows AlexNet's deconvnet
        checkpoint.model.to(memory_format=torch.channels_last)
    height, width = checkpoint.config.image_size
    if height != width:
        raise ValueError(f"expected a square input size but the config has {height}x{width}")
    model.checkpoint = checkpoint
    prior = getattr(checkpoint.model, "prior", None)
    model.prior = copy.deepcopy(prior).cpu() if prior is not None else None
    model.image_spec = ImageSpec(checkpoint.config.in_channels, height, checkpoint.normalisation)
    if model.kind == "classifier":
        _prepare_deconv(model, checkpoint.model.features, device)
        net = checkpoint.model
        model.classifier = UndoableClassifier(net.features, net.classifier).to(device).eval()


def _prepare_deconv(model: ServedModel, features: torch.nn.Sequential, device) -> None:
    model.deconv = UndoableSequential(features).to(device).eval()
    x = torch.zeros(1, *model.image_spec.shape, device=device)
    with torch.inference_mode():
        for layer in model.deconv.wrapped:
            x, _ = layer(x)
            model.layer_shapes.append(tuple(x.shape[1:]))
