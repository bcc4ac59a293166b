"""Feature atlases (Zeiler & Fergus's Figure 2): for every feature map of a network's feature
stack, the dataset items whose strongest activation in that map is highest.

``python -m training atlas`` writes them; the service serves them. On disk, beside the
checkpoints (``<dir>/atlases/<name>.json`` and ``.safetensors``)::

    {"format": "unconv-atlas/1", "network": "cnn", "weights_sha256": "...",
     "dataset": {"name": "mnist-5k", "split": "heldout", "count": 500, ...},
     "top": 9, "method": "deconvnet", "input_shape": [1, 28, 28],
     "layers": [{"layer": 1, "name": "1: Conv2d(...)", "shape": [32, 28, 28],
                 "window": [3, 3]}, ...], ...}

and tensors, K = ``top`` entries per map, strongest first (ties to the lower item index):

- ``items`` (M, C, H, W) uint8: the network inputs of every item an entry names, as
  intensities; ``items.index`` (M,) int64: their indices in the dataset, ascending;
- ``layer<L>.index``, ``.y``, ``.x`` (C_L, K) int64 and ``.value`` (C_L, K) float32: the item
  and the position and value of its strongest activation in the map;
- ``layer<L>.box`` (C_L, K, 4) int64: the receptive field (top, left, bottom, right), clipped;
- ``layer<L>.projection`` (C_L, K, C, h, w) float32: the deconvnet projection of that one
  activation inside a ``window`` (h, w) that lies in the image and holds the box, at
  ``layer<L>.origin`` (C_L, K, 2); the projection is zero outside the box.

Nothing is ever unpickled; the tensors are read by slice, so a large atlas is not held in memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .checkpoint import write_atomically

ATLAS_FORMAT = "unconv-atlas/1"
ATLAS_DIR = "atlases"  # under the checkpoint directory
_PER_MAP = ("index", "y", "x", "value", "box", "origin", "projection")


class AtlasError(ValueError):
    """An atlas is missing or malformed; the message names the file and what was expected."""


def atlas_paths(directory: str | Path, name: str) -> tuple[Path, Path]:
    """The (JSON, safetensors) pair of atlas ``name`` in ``directory``."""
    directory = Path(directory).expanduser()
    return directory / f"{name}.json", directory / f"{name}.safetensors"


@dataclass(frozen=True)
class AtlasEntry:
    """One of a feature map's strongest activations across the dataset.

    Attributes
    ----------
    index : int
        The item's index in the dataset.
    y, x : int
        The activation's position in the layer's output.
    value : float
        The activation.
    box : tuple of int
        The receptive field (top, left, bottom, right) in input pixels, bottom/right exclusive.
    projection : (C, H, W) torch.Tensor
        The deconvnet projection of that one activation, the input's size.
    image : (C, H, W) torch.Tensor
        The item as the network saw it, intensities in [0, 1].
    """

    index: int
    y: int
    x: int
    value: float
    box: tuple[int, int, int, int]
    projection: torch.Tensor
    image: torch.Tensor

    @property
    def patch(self) -> torch.Tensor:
        """(C, h, w) the part of the image that the activation sees."""
        top, left, bottom, right = self.box
        return self.image[:, top:bottom, left:right]

    @property
    def projection_patch(self) -> torch.Tensor:
        """(C, h, w) the projection inside the receptive field."""
        top, left, bottom, right = self.box
        return self.projection[:, top:bottom, left:right]


@dataclass(frozen=True)
class Atlas:
    """A loaded atlas: its JSON document, with the tensors read from disk on demand."""

    name: str
    path: Path
    document: dict[str, Any]

    @property
    def network(self) -> str:
        return self.document["network"]

    @property
    def weights_sha256(self) -> str:
        return self.document["weights_sha256"]

    @property
    def layers(self) -> dict[int, dict[str, Any]]:
        """Each layer (1-based) in the atlas, with its ``shape`` (C, h, w) and ``name``."""
        return {entry["layer"]: entry for entry in self.document["layers"]}

    def channels(self, layer: int) -> int:
        return self.layers[layer]["shape"][0]

    def entries(self, layer: int, channel: int) -> list[AtlasEntry]:
        """The strongest entries of feature map ``channel`` of ``layer``, strongest first."""
        if layer not in self.layers:
            raise KeyError(f"layer {layer} is not in atlas {self.name!r}")
        if not 0 <= channel < self.channels(layer):
            raise KeyError(f"channel {channel} is not in layer {layer}")
        with safe_open(self.path, framework="pt") as f:
            row = {k: f.get_slice(f"layer{layer}.{k}")[channel] for k in _PER_MAP}
            item_index = f.get_tensor("items.index")
            rows = torch.searchsorted(item_index, row["index"])
            images = [f.get_slice("items")[int(r) : int(r) + 1][0] for r in rows]
        return [_entry(row, k, image) for k, image in enumerate(images)]


def _entry(row: dict[str, torch.Tensor], k: int, image: torch.Tensor) -> AtlasEntry:
    pixels = image.float() / 255  # (C, H, W)
    window = row["projection"][k]  # (C, h, w)
    top, left = row["origin"][k].tolist()
    projection = torch.zeros_like(pixels)
    projection[:, top : top + window.shape[1], left : left + window.shape[2]] = window
    return AtlasEntry(
        index=int(row["index"][k]),
        y=int(row["y"][k]),
        x=int(row["x"][k]),
        value=float(row["value"][k]),
        box=tuple(row["box"][k].tolist()),
        projection=projection,
        image=pixels,
    )


def load_atlas(json_path: str | Path) -> Atlas:
    """
    Read and check an atlas's JSON document and that its tensors are there.

    Raises
    ------
    AtlasError
        A file is missing, not valid JSON or safetensors, or lacks what the format needs.
    """
    json_path = Path(json_path)
    weights = json_path.with_suffix(".safetensors")
    try:
        document = json.loads(json_path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AtlasError(f"{json_path} is not a readable JSON file: {err}") from None
    if not isinstance(document, dict) or document.get("format") != ATLAS_FORMAT:
        raise AtlasError(f"{json_path}: expected format {ATLAS_FORMAT!r}")
    missing = [k for k in ("network", "weights_sha256", "dataset", "layers") if k not in document]
    if missing:
        raise AtlasError(f"{json_path}: expected the keys {missing}")
    try:
        with safe_open(weights, framework="pt") as f:
            names = set(f.keys())
    except (SafetensorError, OSError) as err:
        raise AtlasError(f"{weights} is not a readable safetensors file: {err}") from None
    expected = {"items", "items.index"} | {
        f"layer{entry['layer']}.{k}" for entry in document["layers"] for k in _PER_MAP
    }
    if expected - names:
        raise AtlasError(f"{weights}: expected the tensors {sorted(expected - names)[:5]}")
    return Atlas(json_path.stem, weights, document)


def save_atlas(
    directory: str | Path, name: str, document: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> Path:
    """Write atlas ``name`` into ``directory``, tensors before JSON, each atomically, so that a
    reader (the service's watch) never sees half an atlas; returns the JSON file's path."""
    json_path, tensor_path = atlas_paths(directory, name)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    document = {"format": ATLAS_FORMAT, **document}
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    write_atomically(tensor_path, lambda tmp: save_file(tensors, tmp, {"format": ATLAS_FORMAT}))
    write_atomically(json_path, lambda tmp: tmp.write_text(json.dumps(document, indent=1) + "\n"))
    return json_path
