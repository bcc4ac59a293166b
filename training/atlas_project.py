"""The atlas's projections: each entry's one activation projected to pixels by the deconvnet,
kept inside a window of its receptive field's size (the projection is zero outside the field)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Subset

from service.models import UndoableSequential
from service.models.receptive import receptive_field, receptive_size

from .atlas_data import Items, Network
from .atlas_scan import TopK


@dataclass(frozen=True)
class Projected:
    """The tensors ``service.models.atlas`` names (``items``, ``layer<L>.box``, ``.origin``,
    ``.projection``) and each layer's window (h, w)."""

    tensors: dict[str, torch.Tensor]
    windows: dict[int, tuple[int, int]]


def load_all(items: Items, indices: list[int], batch_size: int) -> torch.Tensor:
    """(M, C, H, W) uint8: the items ``indices`` as the scan saw them."""
    loader = DataLoader(Subset(items, indices), batch_size=batch_size)
    return torch.cat([images for _indices, images in loader])


def project_all(
    network: Network, items: Items, top: TopK, batch_size: int, device: torch.device
) -> Projected:
    """Project every entry of ``top`` (layer: (value (C, K), where (C, K, 3)))."""
    indices = sorted({int(i) for _v, where in top.values() for i in where[..., 0].flatten()})
    images = load_all(items, indices, batch_size)  # (M, C, H, W) uint8
    row = {index: r for r, index in enumerate(indices)}
    deconv = UndoableSequential(network.features).to(device).eval()
    tensors = {"items": images, "items.index": torch.tensor(indices, dtype=torch.int64)}
    windows = {}
    for layer, (_value, where) in top.items():
        size = receptive_size(network.features, layer, tuple(images.shape[-2:]))
        rows = torch.tensor([row[int(i)] for i in where[..., 0].flatten()], dtype=torch.int64)
        layer_tensors = _project_layer(
            network, deconv, layer, images, rows, where, size, batch_size, device
        )
        tensors |= {f"layer{layer}.{k}": v for k, v in layer_tensors.items()}
        windows[layer] = size
    return Projected(tensors, windows)


def _project_layer(network, deconv, layer, images, rows, where, size, batch_size, device) -> dict:
    c, k, _ = where.shape
    flat = where.reshape(c * k, 3).cpu()
    channel = torch.arange(c).repeat_interleave(k)
    height, width = images.shape[-2:]
    box = receptive_field(network.features, layer, flat[:, 1], flat[:, 2], (height, width))
    origin = torch.minimum(box[:, :2], torch.tensor([height - size[0], width - size[1]]))
    windows = []
    for start in range(0, c * k, batch_size):
        part = slice(start, start + batch_size)
        x = images[rows[part]].to(device).float() / 255
        x = network.spec.normalisation.normalise(x)
        projection = deconv.project(
            x, layer, channel[part].to(device), flat[part, 1].to(device), flat[part, 2].to(device)
        ).cpu()
        windows += [
            p[:, oy : oy + size[0], ox : ox + size[1]]
            for p, (oy, ox) in zip(projection, origin[part].tolist(), strict=True)
        ]
    return {
        "box": box.view(c, k, 4),
        "origin": origin.view(c, k, 2),
        "projection": torch.stack(windows).view(c, k, *windows[0].shape),
    }
