"""Checkpoints: a safetensors file of weights beside a JSON file that says how to rebuild the model.

``<dir>/<name>.json``::

    {"format": "unconv-checkpoint/1", "architecture": "conv-vae", "config": {...},
     "assumption": "binomial", "normalisation": {"mean": [...], "std": [...]},
     "metadata": {"metrics": {...}, "data": ..., "epochs": ..., ...}}

``<dir>/<name>.safetensors``: the model's state dict. Nothing is ever unpickled.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .autoencoder import ConvAEConfig
from .cnn import CNNConfig
from .losses import ASSUMPTIONS, Normalisation
from .vae import ConvVAEConfig, MLPVAEConfig

FORMAT = "unconv-checkpoint/1"
CONFIGS = {c.architecture: c for c in (ConvAEConfig, MLPVAEConfig, ConvVAEConfig, CNNConfig)}
ModelConfig = ConvAEConfig | MLPVAEConfig | ConvVAEConfig | CNNConfig


class CheckpointError(ValueError):
    """A checkpoint is missing, malformed or does not match its architecture."""


@dataclass
class Checkpoint:
    """A loaded model with everything its JSON file says about it."""

    name: str
    model: nn.Module
    config: ModelConfig
    normalisation: Normalisation
    assumption: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """``"autoencoder"``, ``"vae"`` or ``"classifier"``."""
        return self.config.kind


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """The (JSON, safetensors) pair for a checkpoint given by either file or their common stem."""
    path = Path(path)
    if path.suffix in (".json", ".safetensors"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".json"), path.with_name(path.name + ".safetensors")


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    config: ModelConfig,
    normalisation: Normalisation,
    assumption: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """
    Write ``<path>.safetensors`` and ``<path>.json``; returns the JSON file's path.

    Both files are written to temporary names first and then renamed, weights before JSON, so a
    reader never sees a half-written checkpoint.
    """
    json_path, weights_path = checkpoint_paths(path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    document = {
        "format": FORMAT,
        "architecture": config.architecture,
        "config": dataclasses.asdict(config),
        "assumption": assumption,
        "normalisation": dataclasses.asdict(normalisation),
        "metadata": metadata or {},
    }
    write_atomically(weights_path, lambda tmp: save_file(state, tmp, metadata={"format": FORMAT}))
    write_atomically(json_path, lambda tmp: tmp.write_text(json.dumps(document, indent=2) + "\n"))
    return json_path


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``, so
    that a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        # the mode open() would give: safetensors writes 0600, which another user (a
        # container's uid, a service account) reading the checkpoint volume cannot open
        umask = os.umask(0o022)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_checkpoint_json(path: str | Path) -> dict[str, Any]:
    """The validated JSON document of a checkpoint, without touching its weights."""
    json_path, _ = checkpoint_paths(path)
    if not json_path.is_file():
        raise CheckpointError(f"expected checkpoint metadata at {json_path} but found no file")
    try:
        document = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{json_path} is not valid JSON: {err}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise CheckpointError(f"{json_path}: expected format {FORMAT!r} but found {found!r}")
    if document.get("architecture") not in CONFIGS:
        raise CheckpointError(
            f"{json_path}: unknown architecture {document.get('architecture')!r}; "
            f"expected one of {sorted(CONFIGS)}"
        )
    return document


def _config_from(document: dict, json_path: Path) -> ModelConfig:
    cls = CONFIGS[document["architecture"]]
    values = document.get("config") or {}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise CheckpointError(
            f"{json_path}: config for {cls.architecture!r} has unknown field(s) {unknown}; "
            f"expected a subset of {sorted(names)}"
        )
    # JSON has no tuples; the configs use them for sizes
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _normalisation_from(document: dict, json_path: Path, channels: int) -> Normalisation:
    try:
        norm = Normalisation(
            tuple(document["normalisation"]["mean"]), tuple(document["normalisation"]["std"])
        )
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"{json_path}: expected normalisation {{mean, std}}: {err}") from None
    if len(norm.mean) != channels or len(norm.std) != channels or min(norm.std) <= 0:
        raise CheckpointError(
            f"{json_path}: expected {channels} normalisation mean(s) and positive std(s) "
            f"but found mean={list(norm.mean)}, std={list(norm.std)}"
        )
    return norm


def _check_weights(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    problems = [f"missing {k} {expected[k]}" for k in sorted(expected.keys() - found.keys())]
    problems += [f"unexpected {k} {found[k]}" for k in sorted(found.keys() - expected.keys())]
    problems += [
        f"{k} has shape {found[k]} but the config expects {expected[k]}"
        for k in sorted(expected.keys() & found.keys())
        if expected[k] != found[k]
    ]
    if problems:
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        raise CheckpointError(f"{where} does not match its config: {shown}")


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """
    Rebuild a model from its JSON file and load its weights, in eval mode on ``device``.

    Parameters
    ----------
    path : str or Path
        The checkpoint's ``.json`` or ``.safetensors`` file, or their common stem.
    device : str or torch.device
        Where the model's parameters go.

    Raises
    ------
    CheckpointError
        A file is missing or malformed, the architecture is unknown, or the weights do not
        match the config; the message names what was expected and what was found.
    """
    json_path, weights_path = checkpoint_paths(path)
    document = read_checkpoint_json(json_path)
    config = _config_from(document, json_path)
    assumption = document.get("assumption")
    if config.kind != "classifier" and assumption not in ASSUMPTIONS:
        raise CheckpointError(
            f"{json_path}: expected assumption in {ASSUMPTIONS} but found {assumption!r}"
        )
    normalisation = _normalisation_from(document, json_path, config.in_channels)
    try:
        model = config.build(assumption)
    except (TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{json_path}: cannot build {config}: {err}") from None
    if not weights_path.is_file():
        raise CheckpointError(f"expected checkpoint weights at {weights_path} but found no file")
    try:
        state = load_file(weights_path)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights_path} is not a readable safetensors file: {err}") from None
    _check_weights(model, state, str(weights_path))
    model.load_state_dict(state)
    return Checkpoint(
        name=json_path.stem,
        model=model.to(device).eval(),
        config=config,
        normalisation=normalisation,
        assumption=assumption,
        metadata=document.get("metadata") or {},
    )
