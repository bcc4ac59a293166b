"""The atlas's scan: every feature map's strongest activation in every item, and the running
top-k over the items, which merges exactly across batches and torchrun ranks.

A layer's top-k is ``value`` (C, K) float32 with ``where`` (C, K, 3) int64 holding each entry's
(item index, y, x); entries are ordered by value, strongest first, ties to the lower item index.
Empty slots hold -inf and ``EMPTY`` as their index, so that they sort last.
"""

from __future__ import annotations

import torch
from torch import distributed as dist
from torch import nn
from torch.nn.modules.utils import _pair

EMPTY = torch.iinfo(torch.int64).max
TopK = dict[int, tuple[torch.Tensor, torch.Tensor]]  # layer: (value (C, K), where (C, K, 3))


def layer_shapes(features: nn.Sequential, input_shape: tuple[int, int, int]) -> list[tuple]:
    """The (C, h, w) output of every layer of ``features`` for one input of ``input_shape``."""
    x = torch.zeros(1, *input_shape, device=next(features.parameters()).device)
    shapes = []
    with torch.inference_mode():
        for module in features:
            x = module(x)
            shapes.append(tuple(x.shape[1:]))
    return shapes


def empty_top(shapes: dict[int, tuple], k: int, device: torch.device) -> TopK:
    """No entries yet for the layers in ``shapes`` (layer: (C, h, w))."""
    return {
        layer: (
            torch.full((c, k), float("-inf"), device=device),
            torch.full((c, k, 3), EMPTY, dtype=torch.int64, device=device),
        )
        for layer, (c, _h, _w) in shapes.items()
    }


def select(value: torch.Tensor, where: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` strongest of (C, M) candidates, ties to the lower item index."""
    by_index = where[..., 0].argsort(dim=1, stable=True)
    value, where = _take(value, where, by_index)
    by_value = value.argsort(dim=1, descending=True, stable=True)[:, :k]
    return _take(value, where, by_value)


def _take(value: torch.Tensor, where: torch.Tensor, order: torch.Tensor):
    return value.gather(1, order), where.gather(1, order.unsqueeze(-1).expand(-1, -1, 3))


@torch.inference_mode()
def scan_batch(features: nn.Sequential, x: torch.Tensor, indices: torch.Tensor, top: TopK) -> TopK:
    """
    ``top`` with one batch merged: the plain forward pass of the batch, and after each layer of
    ``top`` the maximum of every feature map of every item merged into that layer's top-k.

    Only the maxima's values are reduced for the whole batch; the position of a maximum is
    looked for in the few maps that enter the top-k (the first, in row-major order).

    Parameters
    ----------
    features : nn.Sequential
        The feature stack; it runs up to the last layer of ``top``.
    x : (N, C, H, W) torch.Tensor
        Network inputs.
    indices : (N,) torch.Tensor of int64
        The items' indices, each higher than every index in ``top``.
    top : TopK
        The running top-k of the layers to look at.
    """
    merged = dict(top)
    values = None
    for number, module in enumerate(list(features)[: max(top)], start=1):
        before_size = x.shape[-2:]
        x, before = module(x), values
        values = None
        if number not in top:
            continue
        if isinstance(module, nn.ReLU) and before is not None:
            values = before.clamp(min=0)  # the ReLU's maximum is its input's, rectified
        elif before is not None and _covers(module, before_size, x.shape[-2:]):
            values = before  # max-pooling windows that cover the input keep its maximum
        else:
            values = x.flatten(2).amax(dim=2)  # (N, C)
        # now, before the next (in-place) ReLU changes x
        merged[number] = merge_layer(*top[number], values, indices, _locate(x))
    return merged


def _covers(module: nn.Module, size: tuple, out: tuple) -> bool:
    """Whether ``module`` is a max-pooling whose windows, together, hold every input pixel
    (without dilation's holes): then its output's maximum is its input's."""
    if not isinstance(module, nn.MaxPool2d) or _pair(module.dilation) != (1, 1):
        return False
    kernel, stride, padding = (
        _pair(v) for v in (module.kernel_size, module.stride, module.padding)
    )
    return all(
        s <= k and (o - 1) * s - p + k >= n
        for k, s, p, n, o in zip(kernel, stride, padding, size, out, strict=True)
    )


def _locate(x: torch.Tensor):
    flat, width = x.flatten(2), x.shape[-1]  # (N, C, h * w)

    def locate(items: torch.Tensor, channels: torch.Tensor) -> tuple:
        position = flat[items, channels].argmax(dim=-1)  # the first maximum
        return position // width, position % width

    return locate


def merge_layer(value, where, values, indices, locate) -> tuple[torch.Tensor, torch.Tensor]:
    """
    One layer's top-k with a batch's maxima merged.

    Parameters
    ----------
    value, where : (C, K), (C, K, 3) torch.Tensor
        The layer's top-k so far.
    values : (N, C) torch.Tensor
        Every map's maximum in every item of the batch.
    indices : (N,) torch.Tensor of int64
        The batch's item indices, each higher than every index in ``where``.
    locate : callable
        ``locate(items, channels)`` -> (y, x) of the first maximum of those (M,) maps.
    """
    c, k = value.shape
    candidates = torch.cat([value, values.T.float()], dim=1)  # (C, K + N), by index
    order = candidates.argsort(dim=1, descending=True, stable=True)[:, :k]  # (C, K)
    kept = where.gather(1, order.clamp(max=k - 1).unsqueeze(-1).expand(-1, -1, 3))
    new = order >= k  # (C, K): entries from this batch
    items = (order - k)[new]
    channels = torch.arange(c, device=order.device).unsqueeze(1).expand(c, k)[new]
    y, x = locate(items, channels)
    kept[new] = torch.stack([indices[items], y, x], dim=-1)
    return candidates.gather(1, order), kept


def merge_ranks(top: TopK) -> TopK:
    """Every torchrun rank's top-k merged into the global one (on every rank)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return top
    merged = {}
    for layer, (value, where) in top.items():
        values = [torch.empty_like(value) for _ in range(dist.get_world_size())]
        wheres = [torch.empty_like(where) for _ in range(dist.get_world_size())]
        dist.all_gather(values, value)
        dist.all_gather(wheres, where)
        merged[layer] = select(torch.cat(values, dim=1), torch.cat(wheres, dim=1), value.shape[1])
    return merged


def trim(top: TopK, count: int) -> TopK:
    """Only the slots that ``count`` items can fill."""
    k = min(count, next(iter(top.values()))[0].shape[1])
    return {layer: (value[:, :k], where[:, :k]) for layer, (value, where) in top.items()}
