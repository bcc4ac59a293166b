"""``python -m training atlas``: Zeiler & Fergus's Figure 2 for every feature map of a network,
over a whole data set, written beside the checkpoints (``service.models.atlas``).

The scan is a plain forward pass of batches with a max over every feature map of every layer;
the few projections (``top`` a map) come after, from the merged top-k. Under torchrun each rank
scans every ``world``-th batch and the top-k merge exactly; rank 0 projects and writes. Each
rank saves its running top-k every ``save_every`` batches, and a run with the same options
resumes from there.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader
from tqdm import tqdm

from service.models import DEFAULT_K, exact_convolutions, write_atomically
from service.models.atlas import ATLAS_DIR, atlas_paths, save_atlas

from .atlas_data import Items, Network, load_items, load_network
from .atlas_project import project_all
from .atlas_scan import (
    TopK,
    empty_top,
    layer_shapes,
    merge_ranks,
    scan_batch,
    trim,
)
from .world import World


@dataclass(frozen=True)
class AtlasOptions:
    """What ``python -m training atlas`` is asked for; see its ``--help``."""

    network: str
    data: str = "mnist-5k"
    split: str = "heldout"
    checkpoints: Path = Path("checkpoints")
    weights: Path | None = None
    out: Path | None = None  # default: <checkpoints>/atlases
    name: str | None = None  # default: the network's name
    layers: tuple[int, ...] | None = None  # default: every layer
    top: int = DEFAULT_K
    batch_size: int = 256
    device: str = "auto"
    workers: int = 0
    save_every: int = 20
    stop_after: int | None = None  # batches, then stop as if interrupted (smoke tests)
    if_stale: bool = False
    progress: bool = True

    @property
    def directory(self) -> Path:
        return Path(self.out or Path(self.checkpoints) / ATLAS_DIR).expanduser()

    @property
    def atlas_name(self) -> str:
        return self.name or self.network


class Stopped(RuntimeError):
    """The scan stopped early (``stop_after``); its state is saved for a resumed run."""


def build_atlas(options: AtlasOptions) -> Path | None:
    """Build the atlas; its JSON file's path, or None when ``if_stale`` found it current."""
    network = load_network(options.network, options.checkpoints, options.weights)
    items = load_items(options.data, options.split, network.spec)
    if options.if_stale and _current(options, network, items):
        return None
    world = World.join(options.device)
    if world.device.type == "cuda":
        exact_convolutions()  # as the service runs them: the projections are /visualise's
    try:
        features = network.features.to(world.device)
        shapes = layer_shapes(features, network.spec.shape)
        layers = _layers(options.layers, len(shapes))
        started = time.perf_counter()
        top = _scan(options, network, items, world, {n: shapes[n - 1] for n in layers})
        seconds = time.perf_counter() - started
        top = trim(merge_ranks(top), len(items))
        path = atlas_paths(options.directory, options.atlas_name)[0]
        if world.rank == 0:
            path = _write(options, network, items, top, shapes, world, seconds)
        world.barrier()
        _partial(options, world.rank)[1].unlink(missing_ok=True)
        _partial(options, world.rank)[0].unlink(missing_ok=True)
        return path
    finally:
        world.leave()


def _layers(chosen: tuple[int, ...] | None, count: int) -> list[int]:
    layers = sorted(set(chosen)) if chosen else list(range(1, count + 1))
    wrong = [n for n in layers if not 1 <= n <= count]
    if wrong:
        raise ValueError(f"expected layers in [1, {count}] but received {wrong}")
    return layers


def _current(options: AtlasOptions, network: Network, items: Items) -> bool:
    json_path, tensor_path = atlas_paths(options.directory, options.atlas_name)
    try:
        document = json.loads(json_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return (
        tensor_path.is_file()
        and document.get("weights_sha256") == network.weights_sha256
        and {k: document.get("dataset", {}).get(k) for k in ("name", "split", "count")}
        == {k: items.description.get(k) for k in ("name", "split", "count")}
    )


def _fingerprint(options: AtlasOptions, network: Network, items: Items, world: World) -> dict:
    return {
        "weights_sha256": network.weights_sha256,
        "dataset": {k: v for k, v in items.description.items()},
        "batch_size": options.batch_size,
        "top": options.top,
        "layers": list(options.layers or []),
        "world_size": world.size,
        "rank": world.rank,
    }


def _partial(options: AtlasOptions, rank: int) -> tuple[Path, Path]:
    stem = options.directory / f"{options.atlas_name}.partial.rank{rank}"
    return stem.with_suffix(".json"), stem.with_suffix(".safetensors")


def _resume(options: AtlasOptions, fingerprint: dict, top: TopK) -> tuple[TopK, int]:
    """The saved running top-k and batch count of an interrupted run with the same options."""
    json_path, tensor_path = _partial(options, fingerprint["rank"])
    try:
        saved = json.loads(json_path.read_text())
        tensors = load_file(tensor_path)
    except (OSError, json.JSONDecodeError, SafetensorError):
        return top, 0
    if saved.get("fingerprint") != fingerprint:
        print(f"{json_path.name} is from other options; starting afresh", flush=True)
        return top, 0
    device = next(iter(top.values()))[0].device
    resumed = {
        layer: (tensors[f"{layer}.value"].to(device), tensors[f"{layer}.where"].to(device))
        for layer in top
    }
    print(f"resuming after {saved['done']} batches", flush=True)
    return resumed, saved["done"]


def _save_partial(options: AtlasOptions, fingerprint: dict, top: TopK, done: int) -> None:
    json_path, tensor_path = _partial(options, fingerprint["rank"])
    json_path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"{layer}.value": v.cpu() for layer, (v, _w) in top.items()}
    tensors |= {f"{layer}.where": w.cpu() for layer, (_v, w) in top.items()}
    write_atomically(tensor_path, lambda tmp: save_file(tensors, tmp))
    document = {"fingerprint": fingerprint, "done": done}
    write_atomically(json_path, lambda tmp: tmp.write_text(json.dumps(document)))


def _batches(count: int, batch_size: int, world: World) -> list[list[int]]:
    """This rank's batches: every ``world.size``-th of the data set's batches, in order."""
    starts = range(world.rank * batch_size, count, world.size * batch_size)
    return [list(range(s, min(s + batch_size, count))) for s in starts]


def _scan(options, network: Network, items: Items, world: World, shapes: dict) -> TopK:
    fingerprint = _fingerprint(options, network, items, world)
    top, done = _resume(options, fingerprint, empty_top(shapes, options.top, world.device))
    batches = _batches(len(items), options.batch_size, world)
    loader = DataLoader(items, batch_sampler=batches[done:], num_workers=options.workers)
    bar = tqdm(
        loader,
        desc=f"atlas {options.atlas_name}",
        unit="batch",
        initial=done,
        total=len(batches),
        disable=not options.progress or world.rank != 0,
    )
    for indices, images in bar:
        x = network.spec.normalisation.normalise(images.to(world.device).float() / 255)
        top = scan_batch(network.features, x, indices.to(world.device), top)
        done += 1
        if done % options.save_every == 0 or done == options.stop_after:
            _save_partial(options, fingerprint, top, done)
        if done == options.stop_after and done < len(batches):
            raise Stopped(f"stopped after {done} of {len(batches)} batches; run again to resume")
    return top


def _write(options, network: Network, items: Items, top: TopK, shapes, world, seconds) -> Path:
    projected = project_all(network, items, top, options.batch_size, world.device)
    tensors, names = dict(projected.tensors), {}
    for layer, (value, where) in top.items():
        tensors[f"layer{layer}.value"] = value
        for i, key in enumerate(("index", "y", "x")):
            tensors[f"layer{layer}.{key}"] = where[..., i]
    if items.name_of(0) is not None:
        names = {str(int(i)): items.name_of(int(i)) for i in tensors["items.index"]}
    scanned = len(items)
    document = {
        "network": network.name,
        "weights_file": network.weights.name,
        "weights_sha256": network.weights_sha256,
        "dataset": items.description | ({"paths": names} if names else {}),
        "top": int(next(iter(top.values()))[0].shape[1]),
        "method": "deconvnet",
        "input_shape": list(network.spec.shape),
        "layers": [
            {"layer": n, "name": f"{n}: {network.features[n - 1]!r}", "shape": list(shapes[n - 1])}
            | {"window": list(projected.windows[n])}
            for n in sorted(top)
        ],
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "scan": {
            "items": scanned,
            "seconds": round(seconds, 3),
            "images_per_s": round(scanned / seconds, 1) if seconds else None,
            "batch_size": options.batch_size,
            "world_size": world.size,
            "device": world.device.type,
        },
    }
    return save_atlas(options.directory, options.atlas_name, document, tensors)
