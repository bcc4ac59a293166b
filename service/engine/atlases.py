"""Feature atlases (``python -m training atlas``) beside the checkpoints, each served only while
it was built for the weights its network serves: a stale atlas is wrong, and says why.

The engine finds them at start-up, after every load or unload, and when their files change
(``UNCONV_WATCH_CHECKPOINTS``); ``render`` makes Figure 2's picture of one feature map.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn import functional as F

from ..models import (
    ATLAS_DIR,
    TORCHVISION_NETWORKS,
    Atlas,
    AtlasEntry,
    AtlasError,
    load_atlas,
)
from ..models.torchvision_nets import file_sha256
from .errors import ErrorCode, RequestError
from .imaging import grid, projection_to_image
from .registry import ServedModel

log = logging.getLogger("unconv")
TILE_PIXELS = 48  # a tile of Figure 2 is at least this wide: layer 1's fields are a few pixels


@dataclass(frozen=True)
class ServedAtlas:
    """An atlas found beside the checkpoints: loaded and served, or not and why.

    Attributes
    ----------
    network : str
        The network it was built for (its file's name).
    atlas : Atlas or None
        The atlas, when it loads.
    reason : str or None
        Why it is not served: broken, its network not served, or built for other weights.
    version : str
        Changes whenever its files do; the ETag's seed.
    """

    network: str
    atlas: Atlas | None
    reason: str | None
    version: str

    @property
    def served(self) -> bool:
        return self.reason is None


def atlas_dir(checkpoint_dir: str | Path) -> Path:
    return Path(checkpoint_dir).expanduser() / ATLAS_DIR


def atlas_files(checkpoint_dir: str | Path) -> dict[str, tuple]:
    """Each atlas's name and the (size, mtime) of its two files, to see when they change."""
    found = {}
    for json_path in sorted(atlas_dir(checkpoint_dir).glob("*.json")):
        if ".partial." in json_path.name:  # a scan's resume state
            continue
        files = (json_path, json_path.with_suffix(".safetensors"))
        found[json_path.stem] = tuple(_stat(p) for p in files)
    return found


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_size, stat.st_mtime_ns


def load_atlases(checkpoint_dir: str | Path, models: dict[str, ServedModel]) -> dict:
    """Every atlas in ``<checkpoint_dir>/atlases`` by network, checked against ``models``."""
    atlases = {}
    for name, files in atlas_files(checkpoint_dir).items():
        version = hashlib.sha256(repr(files).encode()).hexdigest()[:16]
        try:
            atlas = load_atlas(atlas_dir(checkpoint_dir) / f"{name}.json")
        except AtlasError as err:
            atlases[name] = ServedAtlas(name, None, f"{err}; build it again", version)
            continue
        reason = _stale(atlas, models.get(atlas.network))
        if reason is not None:
            log.warning("atlas %s is not served: %s", name, reason)
        atlases[atlas.network] = ServedAtlas(atlas.network, atlas, reason, version)
    return atlases


def _stale(atlas: Atlas, model: ServedModel | None) -> str | None:
    """Why ``atlas`` cannot be served with ``model``, or None when it can."""
    rebuild = f"python -m training atlas --network {atlas.network} rebuilds it"
    if model is None or not model.available:
        return f"network {atlas.network!r} is not served; {rebuild} once it is"
    served = _served_sha256(model)
    if served is None or not atlas.weights_sha256.startswith(served):
        return (
            f"built for weights {atlas.weights_sha256[:16]}, but {atlas.network!r} serves "
            f"{(served or 'unknown')[:16]}; {rebuild}"
        )
    return None


def _served_sha256(model: ServedModel) -> str | None:
    if model.kind == "network":
        return file_sha256(TORCHVISION_NETWORKS[model.name].weights_path)
    return model.metadata.get("sha256")  # a prefix: the checkpoint's, as loaded


def find(atlases: dict[str, ServedAtlas], network: str, layer: int, channel: int) -> tuple:
    """The served atlas of ``network`` and the entries of ``channel`` of ``layer``.

    Raises
    ------
    RequestError
        ``no_atlas`` when ``network`` has no served atlas (the detail says why), and
        ``not_in_atlas`` for a layer or feature map it does not hold.
    """
    served = atlases.get(network)
    if served is None:
        names = sorted(n for n, a in atlases.items() if a.served)
        raise RequestError(
            ErrorCode.NO_ATLAS,
            f"no atlas for {network!r}; atlases serve {names} (GET /atlas lists them; "
            f"python -m training atlas --network {network} builds one)",
        )
    if not served.served:
        raise RequestError(
            ErrorCode.NO_ATLAS, f"the atlas of {network!r} is not served: {served.reason}"
        )
    atlas = served.atlas
    if layer not in atlas.layers:
        raise RequestError(
            ErrorCode.NOT_IN_ATLAS,
            f"layer {layer} is not in the atlas of {network!r}; it holds {sorted(atlas.layers)}",
        )
    if not 0 <= channel < atlas.channels(layer):
        raise RequestError(
            ErrorCode.NOT_IN_ATLAS,
            f"channel {channel} is out of range: layer {layer} of {network!r} has channels 0 "
            f"to {atlas.channels(layer) - 1}",
        )
    return served, atlas.entries(layer, channel)


def render(entries: list[AtlasEntry], window: tuple[int, int]) -> torch.Tensor:
    """
    Figure 2 of Zeiler & Fergus for one feature map: the projections (each inside its
    receptive field) in a 3 x 3 grid, beside the image patches that caused them.

    Returns
    -------
    picture : (C, H, W) torch.Tensor
        Intensities in [0, 1]; C is the images' channels.
    """
    scale = max(1, math.ceil(TILE_PIXELS / max(window)))
    projections = [
        _tile(projection_to_image(e.projection_patch), window, scale, 0.5) for e in entries
    ]
    patches = [_tile(e.patch, window, scale, 0.0) for e in entries]
    columns = 3 if len(entries) > 1 else 1
    left = grid(torch.stack(projections), columns=columns, padding=2, pad_value=1.0)
    right = grid(torch.stack(patches), columns=columns, padding=2, pad_value=1.0)
    gap = left.new_ones(left.shape[0], left.shape[1], 3 * scale + 4)
    return torch.cat([left, gap, right], dim=2)


def _tile(image: torch.Tensor, window: tuple[int, int], scale: int, fill: float) -> torch.Tensor:
    """(C, h, w) placed at the top left of a ``window``-sized tile, enlarged ``scale`` times."""
    tile = image.new_full((image.shape[0], *window), fill)
    tile[:, : image.shape[1], : image.shape[2]] = image
    if scale == 1:
        return tile
    return F.interpolate(tile.unsqueeze(0), scale_factor=scale, mode="nearest")[0]
