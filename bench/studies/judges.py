"""A panel of judges of generated digits: the project's (judge.py) and two that differ from it.

Each judge is a classifier trained only on the training split of ``mnist-5k`` (never on the
held-out digits), with ``features`` (convolutions) and ``classifier`` (hidden layer, ReLU,
logits) stacks, so that ``judge.hidden_features``, ``fidelity`` and ``verdict`` score images in
its penultimate features as they do in the project judge's. The two others differ from it and
from each other in architecture and in training:

- ``wide``: a CNN with twice the project judge's channels (32, 64, 128) and a 512-unit hidden
  layer, trained with AdamW, label smoothing and random affine augmentation (rotations of up
  to 12 degrees, scaling by 0.9-1.1, shifts of up to 2 pixels);
- ``resnet``: a small residual network (a stem and two residual stages with batch norm,
  global average pooling, a 128-unit hidden layer), trained with SGD and Nesterov momentum, a
  one-cycle schedule, weight decay and random shifts of up to 3 pixels.

Training is deterministic (seeded model, shuffling and augmentation); the weights are cached as
safetensors under ``bench/results/`` (not committed), so every study scores with the same ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from service.models import MNIST_NORMALISATION
from training.data import load_mnist_5k, random_shift, to_pixels

from .judge import JUDGE_CACHE, load_or_train_judge

RESULTS = Path("bench/results")


class WideCNN(nn.Module):
    """Three conv-ReLU-pool blocks (32, 64, 128 channels) and a 512-unit hidden layer;
    (N, 1, 28, 28) normalised images -> (N, 10) logits."""

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128), hidden: int = 512):
        super().__init__()
        layers, size, width = [], 28, 1
        for out in channels:
            layers += [nn.Conv2d(width, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            width, size = out, size // 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.3),
            nn.Linear(width * size * size, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class _Residual(nn.Module):
    """Two 3x3 conv-BN layers around a shortcut (a strided 1x1 conv-BN when the shape changes)."""

    def __init__(self, width: int, out: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU(),
            nn.Conv2d(out, out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out),
        )
        self.shortcut = nn.Sequential(
            nn.Conv2d(width, out, 1, stride, bias=False), nn.BatchNorm2d(out)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class SmallResNet(nn.Module):
    """A 3x3 stem (16 channels) and residual stages of 32 and 64 channels, each halving H and
    W, global average pooling and a 128-unit hidden layer; (N, 1, 28, 28) -> (N, 10) logits."""

    def __init__(self, stem: int = 16, stages: tuple[int, ...] = (32, 64), hidden: int = 128):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem)]
        layers.append(nn.ReLU())
        width = stem
        for out in stages:
            layers.append(_Residual(width, out, 2))
            width = out
        layers.append(nn.AdaptiveAvgPool2d(1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def random_affine(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Rotate (up to 12 degrees), scale (0.9-1.1) and shift (up to 2 pixels) every image of
    (N, 1, H, W) normalised images; the background fills the borders."""
    n = len(x)
    angle, scale = torch.rand(2, n, generator=generator)
    angle = (angle * 2 - 1) * math.radians(12)
    scale = 0.9 + 0.2 * scale
    offsets = (torch.rand(n, 2, generator=generator) * 2 - 1) * (2 * 2 / x.shape[-1])
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
    theta = torch.cat([theta, offsets.unsqueeze(2)], 2)  # (N, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    background = MNIST_NORMALISATION.normalise(torch.zeros(()))
    shifted = F.grid_sample(x - background, grid, align_corners=False, padding_mode="zeros")
    return shifted + background


@dataclass(frozen=True)
class JudgeRecipe:
    """How one judge of the panel is built and trained."""

    build: type[nn.Module]
    seed: int
    epochs: int
    batch_size: int

    def optimiser(self, model: nn.Module, steps: int):
        """The optimiser and its per-step scheduler (or ``None``)."""
        if self.build is WideCNN:
            return torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05), None
        sgd = torch.optim.SGD(
            model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4
        )
        return sgd, torch.optim.lr_scheduler.OneCycleLR(sgd, max_lr=0.1, total_steps=steps)

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.build is WideCNN:
            return random_affine(x, generator)
        return random_shift(x, 3, generator)

    @property
    def smoothing(self) -> float:
        return 0.1 if self.build is WideCNN else 0.0


PANEL = {
    "wide": JudgeRecipe(WideCNN, seed=31415, epochs=12, batch_size=64),
    "resnet": JudgeRecipe(SmallResNet, seed=16180, epochs=10, batch_size=128),
}
JUDGES = ("project", *PANEL)


def train_panel_judge(recipe: JudgeRecipe) -> nn.Module:
    """Train one judge of the panel on the training split of ``mnist-5k``; in eval mode."""
    torch.manual_seed(recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)
    splits = load_mnist_5k()
    x = MNIST_NORMALISATION.normalise(to_pixels(splits.train_images))
    y = splits.train_labels
    model = recipe.build()
    steps = recipe.epochs * math.ceil(len(x) / recipe.batch_size)
    optimiser, scheduler = recipe.optimiser(model, steps)
    model.train()
    for _ in range(recipe.epochs):
        for batch in torch.randperm(len(x), generator=generator).split(recipe.batch_size):
            logits = model(recipe.augment(x[batch], generator))
            loss = F.cross_entropy(logits, y[batch], label_smoothing=recipe.smoothing)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            if scheduler is not None:
                scheduler.step()
    return model.eval()


def load_or_train(name: str, results: Path = RESULTS) -> nn.Module:
    """The judge called ``name`` (one of ``JUDGES``), from its cache under ``results`` when it
    is there, else trained and cached there."""
    if name == "project":
        return load_or_train_judge(results / JUDGE_CACHE.name, progress=False)
    recipe = PANEL[name]
    cache = results / f"judge-{name}.safetensors"
    if cache.is_file():
        model = recipe.build()
        model.load_state_dict(load_file(cache))
        return model.eval()
    model = train_panel_judge(recipe)
    cache.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, cache)
    return model


def held_out_accuracy(model: nn.Module) -> float:
    """The judge's accuracy on the 1,000 held-out digits."""
    splits = load_mnist_5k()
    with torch.no_grad():
        x = MNIST_NORMALISATION.normalise(to_pixels(splits.test_images))
        predicted = torch.cat([model(part).argmax(1) for part in x.split(500)])
    return float((predicted == splits.test_labels).float().mean())
