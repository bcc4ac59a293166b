"""Where each picture in docs/images came from: ``docs/images/provenance.json``.

The picture tools (``figures``, ``page_screenshots``) call ``record`` after writing their PNGs.
For each picture the file keeps its SHA-256, the command and the git commit that made it, and
the checkpoints of the service it showed; for each checkpoint (by its weights' SHA-256) what its
own JSON file says it is: architecture, config, assumption and the training options recorded in
its metadata. tests/test_pictures.py compares those with what ``python -m training defaults``
trains now, and each PNG with its hash, so a picture that no longer shows the default models, or
one regenerated without its record, fails the docs tests.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from service.models.checkpoint import checkpoint_paths, read_checkpoint_json

ROOT = Path(__file__).resolve().parents[2]
FILE = "provenance.json"
# the metadata keys of a checkpoint that say how it was trained (training/train.py writes them)
TRAINING_KEYS = (
    "description", "data", "split", "epochs", "seed", "batch_size", "optimiser", "beta",
    "augment_shift", "kl_warmup",
)  # fmt: skip


def sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def checkpoint_record(checkpoint_dir: Path, name: str) -> dict[str, Any]:
    """What checkpoint ``name``'s own files say it is, read without loading its weights."""
    document = read_checkpoint_json(checkpoint_dir / name)
    _, weights = checkpoint_paths(checkpoint_dir / name)
    metadata = document.get("metadata") or {}
    return {
        "name": name,
        "weights_sha256": sha256(weights),
        "architecture": document["architecture"],
        "config": document["config"],
        "assumption": document.get("assumption"),
        "training": {key: metadata.get(key) for key in TRAINING_KEYS},
        "metrics": metadata.get("metrics", {}),
        "trained_at": metadata.get("trained_at"),
        "trained_at_commit": metadata.get("git_commit"),
    }


def served_records(served: list[dict], checkpoint_dir: Path) -> dict[str, dict]:
    """The records of the checkpoints a service lists in ``/models`` (``served``), by name,
    after checking that it serves the very weights in ``checkpoint_dir``."""
    records = {}
    for model in served:
        if model["kind"] == "network" or not model["available"]:
            continue  # torchvision's published weights, or nothing shown
        record = checkpoint_record(checkpoint_dir, model["name"])
        if not record["weights_sha256"].startswith(model["metadata"]["sha256"]):
            raise SystemExit(
                f"the service serves other {model['name']!r} weights than {checkpoint_dir}: "
                "give --checkpoints the directory it serves"
            )
        records[model["name"]] = record
    return records


def _commit() -> tuple[str, bool]:
    """The commit of the working tree and whether the code that makes pictures is committed."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()

    changed = git("status", "--porcelain", "--", "bench", "client", "service", "training")
    return git("rev-parse", "HEAD"), changed == ""


def record(out: Path, pictures: dict[str, list[str]], command: str, models: dict[str, dict]):
    """
    Add the pictures just written to ``out/provenance.json``, keeping the other pictures' records.

    Parameters
    ----------
    out : the directory of the pictures (docs/images)
    pictures : each picture's file name and the names of the models it shows
    command : the command that made them
    models : ``served_records`` of the service that made them
    """
    path = out / FILE
    known = json.loads(path.read_text()) if path.is_file() else {"pictures": {}, "checkpoints": {}}
    commit, clean = _commit()
    for picture, names in pictures.items():
        known["pictures"][picture] = {
            "sha256": sha256(out / picture),
            "command": command,
            "commit": commit,
            "committed_code": clean,
            "checkpoints": {name: models[name]["weights_sha256"] for name in names},
        }
    for model in models.values():
        known["checkpoints"][model["weights_sha256"]] = model
    shown = {sha for p in known["pictures"].values() for sha in p["checkpoints"].values()}
    known["checkpoints"] = {k: v for k, v in known["checkpoints"].items() if k in shown}
    path.write_text(json.dumps(known, indent=2, sort_keys=True) + "\n")
