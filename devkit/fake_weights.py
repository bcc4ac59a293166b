"""Random AlexNet weights in place of torchvision's published file, for tests and the benchmark.

The service refuses a weights file whose SHA-256 does not start with the prefix in its name
(``alexnet-owt-7be5be79.pth``). The random weights that conftest writes under that name stand in
for the published ones, so tests "publish" their own hash; the refusal itself is tested in
tests/service/api/test_security.py. ``python -m devkit.fake_weights`` is ``python -m service``
doing the same for the file in ``$TORCH_HOME``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from service.models import torchvision_nets


def write_alexnet_weights(torch_home: Path, seed: int = 0) -> Path:
    """Randomly initialised AlexNet weights under the published file's name in a torch hub
    cache (``<torch_home>/hub/checkpoints``), unless there already; returns the file's path."""
    from torchvision import models  # only here: the service itself imports torchvision lazily

    name = torchvision_nets.TORCHVISION_NETWORKS["alexnet"].weights_path.name
    path = Path(torch_home) / "hub" / "checkpoints" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(seed)
        torch.save(models.alexnet().state_dict(), path)
    return path


def own_hash_published(path: Path):
    """A stand-in for ``torchvision_nets._published`` that gives ``path``'s own hash prefix."""
    original = torchvision_nets._published
    prefix = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:8]

    def published(candidate: Path) -> str:
        return prefix if Path(candidate).name == Path(path).name else original(candidate)

    return published


if __name__ == "__main__":
    from service.__main__ import main

    weights = torchvision_nets.TORCHVISION_NETWORKS["alexnet"].weights_path
    torchvision_nets._published = own_hash_published(weights)
    main()
