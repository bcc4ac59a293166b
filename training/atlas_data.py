"""What an atlas scans: mnist-5k's digits or a folder of images, each prepared as ``/visualise``
prepares an upload, and the network whose feature stack it scans."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from service.engine.imaging import ImageSpec, open_image, to_input
from service.models import (
    TORCHVISION_NETWORKS,
    Normalisation,
    load_checkpoint,
)
from service.models.torchvision_nets import file_sha256, load_torchvision_network
from service.settings import Settings

from .data import load_mnist_5k

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLITS = ("heldout", "train")
_MAX_PIXELS = Settings.model_fields["max_image_pixels"].default


@dataclass(frozen=True)
class Network:
    """A feature stack to scan, how its inputs are prepared, and the hash of its weights."""

    name: str
    features: nn.Sequential
    spec: ImageSpec
    weights: Path
    weights_sha256: str


def load_network(name: str, checkpoints: Path, weights: Path | None = None) -> Network:
    """A torchvision network (``alexnet``, ``vgg16``...: torchvision's cache, or ``weights``)
    or a classifier checkpoint ``<checkpoints>/<name>.json``, in eval mode on the CPU."""
    if name in TORCHVISION_NETWORKS:
        spec = TORCHVISION_NETWORKS[name]
        model = load_torchvision_network(name, weights_file=weights)
        image_spec = ImageSpec(3, spec.input_size, spec.normalisation, spec.resize_size)
        path = Path(weights) if weights is not None else spec.weights_path
    else:
        checkpoint = load_checkpoint(Path(checkpoints).expanduser() / name)
        if checkpoint.kind != "classifier":
            raise ValueError(
                f"expected a classifier or a torchvision network but {name!r} is a "
                f"{checkpoint.kind}"
            )
        model = checkpoint.model
        config = checkpoint.config
        image_spec = ImageSpec(config.in_channels, config.image_size[0], checkpoint.normalisation)
        path = Path(checkpoints).expanduser() / f"{name}.safetensors"
    return Network(name, model.features.eval(), image_spec, path, file_sha256(path))


def _intensities(spec: ImageSpec) -> ImageSpec:
    """``spec`` with the identity normalisation: ``to_input`` then gives the pixels in [0, 1]."""
    identity = Normalisation((0.0,) * spec.channels, (1.0,) * spec.channels)
    return ImageSpec(spec.channels, spec.size, identity, spec.resize)


def _to_uint8(image: Image.Image, spec: ImageSpec) -> torch.Tensor:
    """(C, H, W) uint8: the upload's pixels exactly as ``to_input`` makes them (k / 255)."""
    pixels = to_input(image, _intensities(spec))[0]
    return (pixels * 255).round_().to(torch.uint8)


class Items(Dataset):
    """
    Dataset items prepared as network inputs: ``items[i]`` is ``(i, (C, H, W) uint8)``, the
    intensities that ``spec.normalisation`` turns into the network's input.

    Parameters
    ----------
    source : list
        The items: (H, W) uint8 digits or image file paths.
    spec : ImageSpec
        The network's input size and how uploads are resized to it.
    description : dict
        What the atlas's JSON says about the data set.
    """

    def __init__(self, source: list, spec: ImageSpec, description: dict[str, Any]):
        self.source, self.spec, self.description = source, spec, description

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        item = self.source[index]
        if isinstance(item, Path):
            image = open_image(
                item.read_bytes(), None, _MAX_PIXELS, self.spec.resize or self.spec.size
            )
        else:
            image = Image.fromarray(np.asarray(item), "L")
        return index, _to_uint8(image, self.spec)

    def name_of(self, index: int) -> str | None:
        """The item's path relative to the folder, for a folder of images."""
        item = self.source[index]
        if not isinstance(item, Path):
            return None
        return item.relative_to(self.description["root"]).as_posix()


def load_items(data: str, split: str, spec: ImageSpec) -> Items:
    """``mnist-5k`` (its ``split``, in the order ``training.data`` loads it) or a folder of
    JPEG and PNG images, read recursively in sorted path order."""
    if data == "mnist-5k":
        if split not in SPLITS:
            raise ValueError(f"expected split in {SPLITS} but received {split!r}")
        splits = load_mnist_5k()
        digits = splits.test_images if split == "heldout" else splits.train_images
        description = {"name": "mnist-5k", "split": split, "count": len(digits)}
        return Items(list(digits.numpy()), spec, description)
    root = Path(data).expanduser()
    if not root.is_dir():
        raise ValueError(f"expected --data mnist-5k or a folder of images but {root} is neither")
    root = root.resolve()
    found = [p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    paths = sorted(found, key=lambda p: p.relative_to(root).as_posix())
    if not paths:
        raise ValueError(f"expected JPEG or PNG images under {root} but found none")
    description = {"name": root.name, "root": str(root), "count": len(paths)}
    return Items(paths, spec, description)
