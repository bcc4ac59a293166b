"""ImageNet networks from torchvision, whose feature stacks the deconvnet visualises.

Weights come from torchvision's own cache (``$TORCH_HOME/hub/checkpoints``), so a file put there
once works offline; they are downloaded only when the caller allows it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision import models

from .losses import Normalisation

IMAGENET_NORMALISATION = Normalisation(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


class WeightsUnavailable(RuntimeError):
    """The pretrained weights are neither cached nor allowed to be downloaded."""


@dataclass(frozen=True)
class NetworkSpec:
    """How to build one torchvision network and prepare images for it."""

    name: str
    builder: Callable[..., nn.Module]
    weights: models.WeightsEnum
    input_size: int = 224
    resize_size: int = 256
    normalisation: Normalisation = IMAGENET_NORMALISATION

    @property
    def weights_path(self) -> Path:
        """Where torchvision caches these weights."""
        return Path(torch.hub.get_dir()) / "checkpoints" / Path(self.weights.url).name


TORCHVISION_NETWORKS = {
    spec.name: spec
    for spec in (
        NetworkSpec("alexnet", models.alexnet, models.AlexNet_Weights.IMAGENET1K_V1),
        NetworkSpec("vgg11", models.vgg11, models.VGG11_Weights.IMAGENET1K_V1),
        NetworkSpec("vgg16", models.vgg16, models.VGG16_Weights.IMAGENET1K_V1),
    )
}


def load_torchvision_network(
    name: str, allow_download: bool = False, weights_file: Path | None = None
) -> nn.Module:
    """
    Build a torchvision network with its ``IMAGENET1K_V1`` weights, in eval mode on the CPU.

    Parameters
    ----------
    name : str
        A key of ``TORCHVISION_NETWORKS``.
    allow_download : bool
        Download the weights into torchvision's cache when they are not there yet.
    weights_file : Path, optional
        Read the weights from this ``.pth`` state dict instead of torchvision's cache.

    Raises
    ------
    WeightsUnavailable
        When the weights file is missing and downloading is not allowed.
    """
    spec = TORCHVISION_NETWORKS[name]
    model = spec.builder(weights=None)
    path = Path(weights_file) if weights_file is not None else spec.weights_path
    if path.is_file():
        # a plain state dict of tensors: nothing in it is unpickled as code
        state = torch.load(path, map_location="cpu", weights_only=True)
    elif allow_download:
        state = spec.weights.get_state_dict(progress=False)
    else:
        raise WeightsUnavailable(
            f"{name} weights not found at {path}; put torchvision's {path.name} there "
            "or set UNCONV_ALLOW_DOWNLOAD=1 to download it"
        )
    model.load_state_dict(state)
    return model.eval()
