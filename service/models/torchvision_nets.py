"""ImageNet networks from torchvision, whose feature stacks the deconvnet visualises.

The networks are built here, layer for layer as torchvision builds them (the same parameter
names, so torchvision's weight files load as they are): importing torchvision's model zoo takes
seconds (it pulls in ``torch._dynamo``), most of a cold start. The feature stack alone serves
the visualiser; the whole classifier (features, pooling and head, nine tenths of AlexNet's
weights) is loaded from the same file when asked for, for the attribution methods.
Weights come from torchvision's own cache (``$TORCH_HOME/hub/checkpoints``), so a file put there
once works offline; they are downloaded only when the caller allows it. Either way the file's
SHA-256 must start with the prefix torchvision publishes in its name (``alexnet-owt-7be5be79``),
and it is read with ``weights_only=True``: tensors only, nothing in it runs as code.
"""

from __future__ import annotations

import functools
import hashlib
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .losses import Normalisation

IMAGENET_NORMALISATION = Normalisation(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


class WeightsUnavailable(RuntimeError):
    """The pretrained weights are neither cached nor allowed to be downloaded, or refused."""


_HASH_PREFIX = re.compile(r"-([a-f0-9]{8,})\.")  # as torch.hub names the files it checks
_WEIGHTS_URL = "https://download.pytorch.org/models/"  # torchvision's IMAGENET1K_V1 files


def alexnet_features() -> nn.Sequential:
    """torchvision's ``alexnet().features``: (N, 3, 224, 224) -> (N, 256, 6, 6)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


def vgg_features(channels: tuple[int | str, ...]) -> nn.Sequential:
    """torchvision's ``vgg*().features`` (no batch norm): 3x3 convolutions with the given
    output channels, "M" a 2x2 max-pool; (N, 3, 224, 224) -> (N, 512, 7, 7)."""
    layers: list[nn.Module] = []
    in_channels = 3
    for out in channels:
        if out == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, out, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = out
    return nn.Sequential(*layers)


def alexnet_head(num_classes: int = 1000) -> tuple[nn.Module, nn.Sequential]:
    """torchvision's ``alexnet()`` ``avgpool`` and ``classifier``: (N, 256, h, w) ->
    (N, num_classes)."""
    classifier = nn.Sequential(
        nn.Dropout(p=0.5),
        nn.Linear(256 * 6 * 6, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(p=0.5),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Linear(4096, num_classes),
    )
    return nn.AdaptiveAvgPool2d((6, 6)), classifier


def vgg_head(num_classes: int = 1000) -> tuple[nn.Module, nn.Sequential]:
    """torchvision's ``vgg*()`` ``avgpool`` and ``classifier``: (N, 512, h, w) ->
    (N, num_classes)."""
    classifier = nn.Sequential(
        nn.Linear(512 * 7 * 7, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(p=0.5),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(p=0.5),
        nn.Linear(4096, num_classes),
    )
    return nn.AdaptiveAvgPool2d((7, 7)), classifier


_VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class FeatureNetwork(nn.Module):
    """The feature stack of an ImageNet network, as ``.features`` (torchvision's name)."""

    def __init__(self, features: nn.Sequential):
        super().__init__()
        self.features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class ImageNetClassifier(FeatureNetwork):
    """The whole ImageNet classifier: ``features``, ``avgpool`` and ``classifier`` as
    torchvision names them; (N, 3, H, W) -> (N, 1000) logits."""

    def __init__(self, features: nn.Sequential, avgpool: nn.Module, classifier: nn.Sequential):
        super().__init__(features)
        self.avgpool = avgpool
        self.classifier = classifier

    @property
    def head(self) -> nn.Sequential:
        """Everything after the features as one stack, sharing this network's modules."""
        return nn.Sequential(self.avgpool, nn.Flatten(1), *self.classifier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@dataclass(frozen=True)
class NetworkSpec:
    """How to build one torchvision network's feature stack and prepare images for it."""

    name: str
    build_features: Callable[[], nn.Sequential]
    build_head: Callable[[], tuple[nn.Module, nn.Sequential]]
    weights_file: str  # the name of torchvision's IMAGENET1K_V1 file, with its hash prefix
    input_size: int = 224
    resize_size: int = 256
    normalisation: Normalisation = IMAGENET_NORMALISATION

    @property
    def url(self) -> str:
        return _WEIGHTS_URL + self.weights_file

    @property
    def weights_path(self) -> Path:
        """Where torchvision caches these weights."""
        return Path(torch.hub.get_dir()) / "checkpoints" / self.weights_file


TORCHVISION_NETWORKS = {
    spec.name: spec
    for spec in (
        NetworkSpec("alexnet", alexnet_features, alexnet_head, "alexnet-owt-7be5be79.pth"),
        NetworkSpec("vgg11", lambda: vgg_features(_VGG11), vgg_head, "vgg11-8a719046.pth"),
        NetworkSpec("vgg16", lambda: vgg_features(_VGG16), vgg_head, "vgg16-397923af.pth"),
    )
}


def load_torchvision_network(
    name: str,
    allow_download: bool = False,
    weights_file: Path | None = None,
    classifier: bool = False,
) -> FeatureNetwork:
    """
    A torchvision network with its ``IMAGENET1K_V1`` weights, in eval mode on the CPU: the
    feature stack, or with ``classifier`` the whole classifier.

    Parameters
    ----------
    name : str
        A key of ``TORCHVISION_NETWORKS``.
    allow_download : bool
        Download the weights into torchvision's cache when they are not there yet.
    weights_file : Path, optional
        Read the weights from this ``.pth`` state dict instead of torchvision's cache (still
        with ``weights_only=True``, but without the published-hash check).
    classifier : bool
        Build and load the pooling and head too (an ``ImageNetClassifier``); otherwise only
        the ``features`` (a ``FeatureNetwork``), and the file's other weights are not kept.

    Raises
    ------
    WeightsUnavailable
        When the weights file is missing and downloading is not allowed, is not the published
        file, or holds anything but tensors.
    """
    spec = TORCHVISION_NETWORKS[name]
    model = (
        ImageNetClassifier(spec.build_features(), *spec.build_head())
        if classifier
        else FeatureNetwork(spec.build_features())
    )
    path = Path(weights_file) if weights_file is not None else spec.weights_path
    if not path.is_file():
        if not allow_download:
            raise WeightsUnavailable(
                f"{name} weights not found at {path}; put torchvision's {path.name} there "
                "or set UNCONV_ALLOW_DOWNLOAD=1 to download it"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        # checks the hash as it downloads, and moves the file into place only when it matches
        torch.hub.download_url_to_file(spec.url, str(path), hash_prefix=_published(path))
    # a file the caller names is theirs to vouch for; the cache's must be the published one
    state = _read_tensors(path) if weights_file is not None else read_published_weights(path)
    try:
        if not classifier:
            state = {k: v for k, v in state.items() if k.startswith("features.")}
        model.load_state_dict(state)
    except RuntimeError as err:
        raise WeightsUnavailable(f"{path} does not hold {name}'s weights: {err}") from None
    return model.eval()


def _published(path: Path) -> str:
    match = _HASH_PREFIX.search(path.name)
    if match is None:
        raise WeightsUnavailable(f"{path.name} carries no published hash in its name")
    return match.group(1)


def read_published_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in ``path``, once its SHA-256 matches the prefix in its name.

    Raises
    ------
    WeightsUnavailable
        When the hash differs, or the file holds anything but tensors.
    """
    expected = _published(path)
    digest = file_sha256(path)
    if not digest.startswith(expected):
        raise WeightsUnavailable(
            f"{path} is not the published file: its SHA-256 starts with "
            f"{digest[: len(expected)]}, not {expected}; delete it and download "
            "it again (UNCONV_ALLOW_DOWNLOAD=1)"
        )
    return _read_tensors(path)


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise WeightsUnavailable(f"{path} is not a plain state dict of tensors: {err}") from None
    if not isinstance(state, dict):
        raise WeightsUnavailable(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file (hex), read once per version of the file (its size and time)."""
    stat = Path(path).stat()
    return _sha256(Path(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    """The file's SHA-256, once per version of the file (size and mtime are part of the key)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
