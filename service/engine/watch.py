"""``UNCONV_WATCH_CHECKPOINTS``: serve a checkpoint that changed on disk (retrained, fixed or
new) without a call to the model-repository extension.

The engine looks at the checkpoint directory every ``Engine.WATCH_INTERVAL_S`` seconds and
reloads each checkpoint whose files changed. ``python -m training`` writes the weights before
the JSON, each atomically, so a changed JSON means a whole checkpoint; a checkpoint copied in by
hand may be caught half-written, fail to load (the old model keeps serving), and load at the
next look once its files have changed again. Every worker process watches for itself.
"""

from __future__ import annotations

from pathlib import Path

from ..models import checkpoint_paths

Identity = tuple[int, int, int] | None  # (inode, size, mtime in ns); None: no such file


def checkpoint_files(directory: str | Path) -> dict[str, tuple[Identity, Identity]]:
    """Each checkpoint in ``directory`` by name, with the identity of its JSON and weights."""
    directory = Path(directory).expanduser()
    found = {}
    for json_path in directory.glob("*.json"):
        if json_path.stem.endswith(".state"):  # a training run's resume state, not a model
            continue
        found[json_path.stem] = tuple(map(_identity, checkpoint_paths(json_path)))
    return found


def changed(before: dict, now: dict) -> list[str]:
    """The checkpoints that are new or whose files changed; removed ones are left serving."""
    return sorted(name for name, files in now.items() if before.get(name) != files)


def _identity(path: Path) -> Identity:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns
