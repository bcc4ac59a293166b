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
def batch_maxima(features: nn.Sequential, x: torch.Tensor, layers: list[int]) -> dict:
    """
    Every feature map's strongest activation in every item of a batch.

    Parameters
    ----------
    features : nn.Sequential
        The feature stack; it runs as a plain forward pass, up to the last of ``layers``.
    x : (N, C, H, W) torch.Tensor
        Network inputs.
    layers : list of int
        1-based layers to look at.

    Returns
    -------
    maxima : dict
        layer: (values (N, C_L), positions (N, C_L) flat in h * w, the first of the maximum,
        width w).
    """
    maxima: dict[int, tuple] = {}
    wanted = set(layers)
    for number, module in enumerate(list(features)[: max(layers)], start=1):
        x = module(x)
        if number not in wanted:
            continue
        if isinstance(module, nn.ReLU) and number - 1 in maxima:
            maxima[number] = _relu_of(maxima[number - 1])
        else:  # before the next (in-place) ReLU changes x
            values, positions = x.flatten(2).max(dim=2)
            maxima[number] = (values, positions, x.shape[-1])
    return maxima


def _relu_of(maxima: tuple) -> tuple:
    """A ReLU's maxima from its input's: the same first maximum where it is positive, else
    the map is all zeros and its first maximum is at 0."""
    values, positions, width = maxima
    positive = values > 0
    return values.clamp(min=0), torch.where(positive, positions, 0), width


def merge_batch(top: TopK, maxima: dict, indices: torch.Tensor) -> TopK:
    """``top`` with a batch's maxima (``batch_maxima``) of the items ``indices`` (N,) merged;
    every index in the batch is higher than every index in ``top``."""
    merged = {}
    for layer, (value, where) in top.items():
        values, positions, width = maxima[layer]
        k = value.shape[1]
        candidates = torch.cat([value, values.T.float()], dim=1)  # (C, K + N), by index
        order = candidates.argsort(dim=1, descending=True, stable=True)[:, :k]  # (C, K)
        column = (order - k).clamp(min=0)
        position = positions.T.gather(1, column)
        new = torch.stack([indices[column], position // width, position % width], dim=-1)
        old = where.gather(1, order.clamp(max=k - 1).unsqueeze(-1).expand(-1, -1, 3))
        merged[layer] = (
            candidates.gather(1, order),
            torch.where((order >= k).unsqueeze(-1), new, old),
        )
    return merged


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
