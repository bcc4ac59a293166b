"""Receptive fields: the input pixels that one activation of a feature stack can see.

Computed from the stack's geometry alone (kernel, stride, padding and dilation of every
convolution and pooling layer; ReLUs see what they are given), so they hold for any weights.
A deconvnet projection of one activation is zero outside its receptive field.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.utils import _pair

_GEOMETRIC = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


def _geometry(module: nn.Module) -> tuple[tuple[int, int], ...] | None:
    """(kernel, stride, padding, dilation), each as (rows, columns); None for a ReLU."""
    if isinstance(module, nn.ReLU):
        return None
    if not isinstance(module, _GEOMETRIC):
        raise TypeError(f"expected a Conv2d, MaxPool2d, AvgPool2d or ReLU but received {module!r}")
    kernel = _pair(module.kernel_size)
    stride = _pair(module.stride or module.kernel_size)
    padding = _pair(module.padding)
    dilation = _pair(getattr(module, "dilation", 1))
    return kernel, stride, padding, dilation


def receptive_field(
    stack: nn.Sequential,
    layer: int,
    y: torch.Tensor,
    x: torch.Tensor,
    input_size: tuple[int, int],
) -> torch.Tensor:
    """
    The input box each activation at (``y``, ``x``) of ``layer`` sees, clipped to the image.

    Parameters
    ----------
    stack : nn.Sequential
        Conv2d, ReLU, MaxPool2d and AvgPool2d layers (a network's ``features``).
    layer : int
        1-based index of the layer whose output holds the activations.
    y, x : (N,) torch.Tensor of int64
        Positions in that layer's output.
    input_size : (int, int)
        The input's height and width.

    Returns
    -------
    box : (N, 4) torch.Tensor of int64
        ``(top, left, bottom, right)`` with bottom and right exclusive, in input pixels.
    """
    if not 1 <= layer <= len(stack):
        raise ValueError(f"no layer '{layer}' in a {len(stack)}-layer network")
    first = torch.stack([y, x], dim=1).long()  # (N, 2): rows, columns of the first pixel seen
    last = first.clone()
    for module in reversed(list(stack)[:layer]):
        geometry = _geometry(module)
        if geometry is None:
            continue
        kernel, stride, padding, dilation = (torch.tensor(g) for g in geometry)
        first = first * stride - padding
        last = last * stride - padding + dilation * (kernel - 1)
    size = torch.tensor(input_size)
    first, last = first.clamp(min=0), torch.minimum(last + 1, size)
    return torch.cat([first, last], dim=1)


def receptive_size(stack: nn.Sequential, layer: int, input_size: tuple[int, int]) -> tuple:
    """The (height, width) of ``layer``'s receptive field, at most the input's: every box
    that ``receptive_field`` gives fits in it."""
    size = torch.ones(2, dtype=torch.long)
    for module in reversed(list(stack)[:layer]):
        geometry = _geometry(module)
        if geometry is None:
            continue
        kernel, stride, _padding, dilation = (torch.tensor(g) for g in geometry)
        size = (size - 1) * stride + dilation * (kernel - 1) + 1
    return tuple(min(int(s), int(limit)) for s, limit in zip(size, input_size, strict=True))
