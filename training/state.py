"""Resumable training state: optimiser, scheduler and RNG beside a checkpoint, without pickle.

``<name>.state.safetensors`` holds every tensor (optimiser moments, RNG states);
``<name>.state.json`` holds the rest (epoch, history, param groups, scheduler state).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from service.models import write_atomically


class StateError(ValueError):
    """A training state to resume from is missing or broken."""


def state_paths(checkpoint: Path) -> tuple[Path, Path]:
    """The (JSON, safetensors) pair of the training state that belongs to a checkpoint stem."""
    return (
        checkpoint.with_name(checkpoint.name + ".state.json"),
        checkpoint.with_name(checkpoint.name + ".state.safetensors"),
    )


def _split(value: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested structure by a reference into ``tensors``."""
    if isinstance(value, torch.Tensor):
        tensors[prefix] = value.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(value, dict):
        return {str(k): _split(v, f"{prefix}.{k}", tensors) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_split(v, f"{prefix}.{i}", tensors) for i, v in enumerate(value)]
    return value


def _join(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__tensor__"}:
            return tensors[value["__tensor__"]]
        return {k: _join(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_join(v, tensors) for v in value]
    return value


def save_state(checkpoint: Path, state: dict[str, Any]) -> None:
    """Write a nested dict of tensors and JSON values next to ``checkpoint``."""
    json_path, tensor_path = state_paths(checkpoint)
    tensors: dict[str, torch.Tensor] = {}
    document = _split(state, "state", tensors)
    write_atomically(tensor_path, lambda tmp: save_file(tensors, tmp))
    write_atomically(json_path, lambda tmp: tmp.write_text(json.dumps(document)))


def load_state(checkpoint: Path) -> dict[str, Any]:
    """Read what ``save_state`` wrote; raises ``StateError`` naming the broken file."""
    json_path, tensor_path = state_paths(checkpoint)
    for path in (json_path, tensor_path):
        if not path.is_file():
            raise StateError(f"cannot resume: expected training state at {path} but found no file")
    try:
        document = json.loads(json_path.read_text())
        tensors = load_file(tensor_path)
        return _optimiser_keys(_join(document, tensors))
    except (json.JSONDecodeError, SafetensorError, OSError, KeyError) as err:
        raise StateError(
            f"cannot resume: training state {json_path.stem} is broken: {err}"
        ) from None


def _optimiser_keys(state: dict[str, Any]) -> dict[str, Any]:
    # JSON turned the optimiser's integer parameter ids into strings
    optimiser = state.get("optimiser")
    if optimiser and "state" in optimiser:
        optimiser["state"] = {int(k): v for k, v in optimiser["state"].items()}
    return state
