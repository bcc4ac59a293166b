"""A small MNIST classifier whose feature stack the deconvnet can undo."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn


class MnistCNN(nn.Module):
    """
    Conv-ReLU-MaxPool blocks followed by a two-layer classifier.

    The ``features`` stack holds only Conv2d, ReLU and MaxPool2d, so that
    ``UndoableSequential(model.features)`` can visualise every layer of a network that was
    trained offline.

    Parameters
    ----------
    in_channels : int
        Channels of the (N, in_channels, H, W) inputs.
    channels : tuple of int
        Output channels of each conv block; every block halves H and W.
    hidden_features : int
        Width of the classifier's hidden layer.
    num_classes : int
        Number of logits (N, num_classes) the model returns.
    image_size : (int, int)
        Input height and width, which fix the classifier's input size.
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: tuple[int, ...] = (32, 64),
        hidden_features: int = 128,
        num_classes: int = 10,
        image_size: tuple[int, int] = (28, 28),
    ):
        super().__init__()
        layers: list[nn.Module] = []
        height, width = image_size
        for out_channels in channels:
            layers += [
                nn.Conv2d(in_channels, out_channels, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            in_channels, height, width = out_channels, height // 2, width // 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.25),
            nn.Linear(in_channels * height * width, hidden_features),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_features, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images -> (N, num_classes) logits."""
        return self.classifier(self.features(x))


@dataclass
class CNNConfig:
    """Architecture of a ``MnistCNN``; saved with its checkpoints."""

    architecture: ClassVar[str] = "mnist-cnn"
    kind: ClassVar[str] = "classifier"
    in_channels: int = 1
    channels: tuple[int, ...] = (32, 64)
    hidden_features: int = 128
    num_classes: int = 10
    image_size: tuple[int, int] = (28, 28)

    def build(self, assumption: str | None = None) -> MnistCNN:
        return MnistCNN(
            self.in_channels, self.channels, self.hidden_features, self.num_classes, self.image_size
        )
