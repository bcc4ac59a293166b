"""The README's pictures show what they claim: today's default models.

``docs/images/provenance.json`` (written by ``bench.pictures.figures`` and
``bench.pictures.page_screenshots``, ``bench/pictures/provenance.py``) keeps, for each picture,
its SHA-256, the command and commit that made it, and the checkpoints the service showed, each
as its own JSON file described it. Here each picture must be the file its record hashed, and
each checkpoint what ``python -m training defaults`` trains now (the recipes of
``training/recipes.py`` with the options' defaults). When a default recipe changes, these fail
until the pictures are made again from checkpoints trained by it:

    python -m training defaults --force && python -m service &
    python -m bench.pictures.figures && python -m bench.pictures.page_screenshots
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import pytest

from training.recipes import DEFAULT_MODELS
from training.train import TrainOptions

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
PROVENANCE = json.loads((IMAGES / "provenance.json").read_text())
SHOWN = sorted(set(re.findall(r"\(docs/images/([\w-]+\.png)\)", (ROOT / "README.md").read_text())))
REMAKE = "make it again: python -m bench.pictures.figures or bench.pictures.page_screenshots"


def _trained_now(name: str) -> dict:
    """What ``python -m training defaults`` trains as ``name`` now, in a record's terms."""
    options = TrainOptions(model=name, out=Path("checkpoints"))
    recipe = options.recipe()
    vae = recipe.kind == "vae"
    optimiser = {"name": recipe.optimiser, "lr": recipe.lr, "schedule": recipe.schedule}
    return {
        "architecture": recipe.config.architecture,
        "config": json.loads(json.dumps(dataclasses.asdict(recipe.config))),
        "assumption": recipe.assumption,
        "training": {
            "description": recipe.description,
            "data": options.data,
            "epochs": recipe.epochs,
            "seed": options.seed,
            "batch_size": recipe.batch_size,
            "optimiser": optimiser | {"weight_decay": recipe.weight_decay},
            "beta": recipe.beta if vae else None,
            "augment_shift": recipe.augment_shift,
            "kl_warmup": options.kl_warmup if vae else None,
        },
    }


def _as_recorded(checkpoint: dict) -> dict:
    training = {k: v for k, v in checkpoint["training"].items() if k != "split"}
    return {k: checkpoint[k] for k in ("architecture", "config", "assumption")} | {
        "training": training
    }


def test_every_picture_the_readme_shows_has_a_record():
    assert len(SHOWN) >= 6, "no pictures found in the README: the pattern or the README changed"
    assert [p for p in SHOWN if p not in PROVENANCE["pictures"]] == []


@pytest.mark.parametrize("picture", SHOWN)
def test_a_picture_is_the_file_its_record_describes(picture):
    record = PROVENANCE["pictures"][picture]
    assert hashlib.sha256((IMAGES / picture).read_bytes()).hexdigest() == record["sha256"], REMAKE
    assert re.fullmatch(r"[0-9a-f]{40}", record["commit"])
    assert record["committed_code"], "made by code that was not committed"
    assert record["command"].startswith("python -m bench.pictures.")


@pytest.mark.parametrize("picture", SHOWN)
def test_a_picture_shows_the_models_training_defaults_trains_now(picture):
    shown = PROVENANCE["pictures"][picture]["checkpoints"]
    assert shown and set(shown) <= set(DEFAULT_MODELS), shown
    for name, weights in shown.items():
        checkpoint = PROVENANCE["checkpoints"][weights]
        assert checkpoint["weights_sha256"] == weights
        assert _as_recorded(checkpoint) == _trained_now(name), f"{name}: {REMAKE}"
