"""Convolutional auto-encoder (exercise 3) and the encoder/decoder parts it shares with the VAE."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .losses import sample_range, to_intensities

ACTIVATIONS = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


def make_activation(name: str) -> nn.Module:
    """The activation module called ``name`` (a key of ``ACTIVATIONS``)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"expected activation in {sorted(ACTIVATIONS)} but received {name!r}")
    return ACTIVATIONS[name]()


def conv_encoder(
    in_channels: int,
    hid_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    pooling: int = 2,
    activation: nn.Module = nn.ReLU(),
) -> nn.Sequential:
    """
    Convolution, activation, average pooling, convolution; logits out.

    Maps (N, in_channels, H, W) to (N, out_channels, h, w). Pooling rounds up (``ceil_mode``),
    so a partial window at the border is averaged instead of dropped.
    """
    padding = kernel_size // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, hid_channels, kernel_size, stride, padding),
        copy.deepcopy(activation),
        nn.AvgPool2d(pooling, ceil_mode=True),
        nn.Conv2d(hid_channels, out_channels, kernel_size, stride, padding),
    )


def conv_decoder(
    code_channels: int,
    hid_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    pooling: int = 2,
    activation: nn.Module = nn.ReLU(),
) -> nn.Sequential:
    """
    The mirror image of ``conv_encoder``: transposed convolutions and upsampling; logits out.

    Maps (N, code_channels, h, w) to (N, out_channels, H', W') with H' >= H and W' >= W of the
    encoder's input (``output_padding = stride - 1`` rounds up); crop the result to (H, W).
    """
    padding = kernel_size // 2
    return nn.Sequential(
        nn.ConvTranspose2d(
            code_channels, hid_channels, kernel_size, stride, padding, output_padding=stride - 1
        ),
        copy.deepcopy(activation),
        nn.Upsample(scale_factor=float(pooling), mode="nearest"),
        nn.ConvTranspose2d(
            hid_channels, out_channels, kernel_size, stride, padding, output_padding=stride - 1
        ),
    )


class AutoEncoder(nn.Module):
    """Convolutional auto-encoder.

    Maps (N, in_channels, H, W) inputs to logits of the same shape, for any H and W.
    """

    def __init__(
        self,
        in_channels: int,
        hid_channels: int,
        code_channels: int,
        kernel_size: int,
        stride: int = 1,
        pooling: int = 2,
        activation: nn.Module = nn.ReLU(),
        assumption: str | None = None,
    ):
        """
        Parameters
        ----------
        in_channels : int
            Number of channels in the inputs.
        hid_channels : int
            Number of channels in the hidden layer(s).
        code_channels : int
            Number of channels in the latent space.
        kernel_size : int
            Window size for convolutional layers
        stride : int, optional
            Window strides for convolutional layers.
        pooling : int, optional
            Window size for the average pooling.
        activation : nn.Module, optional
            Activation function for the auto-encoder.
        assumption : str, optional
            The assumption used for reconstruction, available options are:

            - gauss: assume targets to be standard normally distributed
            - truncated: assume targets to be Gaussian truncated to [0, 1]
            - binomial: assume targets to be probabilities for binomial
            - binary: assume targets to be binomially distributed
        """
        super().__init__()
        self.assumption = assumption
        parts = (kernel_size, stride, pooling, activation)
        self.encoder = conv_encoder(in_channels, hid_channels, code_channels, *parts)
        self.decoder = conv_decoder(code_channels, hid_channels, in_channels, *parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) inputs -> (N, C, H, W) logits."""
        logits = self.decoder(self.encoder(x))
        return logits[..., : x.shape[-2], : x.shape[-1]]

    @torch.no_grad()
    def to_intensities(self, logits: torch.Tensor, x_range: tuple | None = None) -> torch.Tensor:
        """
        Decode logits to proper pixel intensities according to assumptions.

        Parameters
        ----------
        logits : (N, C, H, W) torch.Tensor
            Logits to be decoded by this auto-encoder.
        x_range : (min, max), optional
            Range of the inputs (scalars or per-sample tensors), used by ``gauss``.

        Returns
        -------
        image : (N, C, H, W) torch.Tensor
            Decoded image with pixel intensities in [0, 1].
        """
        return to_intensities(logits, self.assumption, x_range)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct (N, C, H, W) inputs to (N, C, H, W) intensities in [0, 1]."""
        return self.to_intensities(self.forward(x), sample_range(x))


@dataclass
class ConvAEConfig:
    """Architecture of an ``AutoEncoder``; saved with its checkpoints."""

    architecture: ClassVar[str] = "conv-ae"
    kind: ClassVar[str] = "autoencoder"
    in_channels: int = 1
    hid_channels: int = 64
    code_channels: int = 16
    kernel_size: int = 5
    stride: int = 1
    pooling: int = 2
    activation: str = "elu"
    image_size: tuple[int, int] = (28, 28)

    def build(self, assumption: str | None = None) -> AutoEncoder:
        return AutoEncoder(
            self.in_channels,
            self.hid_channels,
            self.code_channels,
            self.kernel_size,
            self.stride,
            self.pooling,
            make_activation(self.activation),
            assumption,
        )
