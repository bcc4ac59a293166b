"""docs/variety.md is rendered from docs/variety.json (bench/studies/variety.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from bench.studies.variety import panels, render, training_command

ROOT = Path(__file__).resolve().parents[3]


def test_the_committed_report_is_rendered_from_its_json():
    results = json.loads((ROOT / "docs" / "variety.json").read_text())
    assert render(results, panels(ROOT / "docs")) == (ROOT / "docs" / "variety.md").read_text()


def test_a_prior_row_shows_its_figures_rounded():
    row = {"components": 100, "temperature": 0.6, "precision": 0.934, "recall": 0.633}
    row |= {"fid": 16.94, "score": 9.216, "confident": 0.942, "agreement_min": 0.95}
    entry = {"checkpoint": "ck/vae", "epochs": 10, "train_seconds": 483.2, "neg_elbo": 108.94}
    entry |= {"reconstructions": {"precision": 0.93, "recall": 0.71, "fid": 23.06}, "priors": [row]}
    real = {"precision": 0.885, "recall": 0.87, "fid": 9.08}
    text = render({"machine": "M.", "real": real, "checkpoints": [entry]})
    assert "| 100 | 0.6 | 0.93 | 0.63 | 16.9 | 9.22 | 94.2% | 95.0% |" in text.splitlines()
    assert "Held-out negative ELBO 108.9 nats (N(0, I) prior); 483 s" in text
    assert "precision 0.89, recall 0.87, FID 9.1" in text


def test_runs_judged_only_by_their_bound_make_a_table_of_their_own():
    run = {"checkpoint": "ck/a", "epochs": 30, "beta": 0.8, "kl_warmup": 0, "res_blocks": 2}
    run |= {"optimiser": {"name": "adamw", "lr": 0.001, "weight_decay": 0.1}, "dropout": 0.0}
    run |= {"train_seconds": 340.4, "neg_elbo": 102.93}
    real = {"precision": 0.885, "recall": 0.87, "fid": 9.08}
    text = render({"machine": "M.", "real": real, "checkpoints": [], "bounds": [run]})
    assert "| `ck/a` | 30 | adamw 0.001, 0.1 | 0.8 (0) | 2 | 0 | 340 | 102.9 |" in text
    assert "Other training runs" not in render({"machine": "M.", "real": real, "checkpoints": []})


def test_a_run_is_named_by_its_recipe_and_the_options_it_changes():
    from training.recipes import RECIPES

    vae = RECIPES["conv-vae"]  # a recipe with ConvVAEConfig's res_blocks, adam, 10 epochs
    config = dataclasses.asdict(vae.config) | {"res_blocks": 2}
    optimiser = {"name": "adamw", "lr": 0.001, "schedule": "onecycle", "weight_decay": 0.1}
    metadata = {"description": vae.description, "epochs": 30, "beta": 0.8, "kl_warmup": 0}
    metadata |= {"optimiser": optimiser, "batch_size": 32}
    assert training_command(metadata, config) == {
        "command": "python -m training conv-vae --epochs 30 --beta 0.8 --optimiser adamw "
        "--lr 0.001 --weight-decay 0.1",
        "config": ["res_blocks=2"],
    }
    plain = {"description": vae.description, "epochs": 10, "beta": 1.0}
    assert training_command(plain, dataclasses.asdict(vae.config))["command"] == (
        "python -m training conv-vae"
    )
    assert "no longer" in training_command({"description": "gone"}, {})["command"]


def test_a_section_is_headed_by_the_command_not_the_checkpoint_path():
    run = {"checkpoint": "/tmp/x/vae", "epochs": 30, "beta": 0.8, "kl_warmup": 0, "res_blocks": 2}
    run |= {"optimiser": {"name": "adamw", "lr": 0.001, "weight_decay": 0.1}, "dropout": 0.0}
    run |= {"train_seconds": 340.4, "neg_elbo": 102.93}
    run["trained_by"] = {"command": "python -m training vae --beta 0.8", "config": ["res_blocks=2"]}
    real = {"precision": 0.885, "recall": 0.87, "fid": 9.08}
    text = render({"machine": "M.", "real": real, "checkpoints": [], "bounds": [run]})
    assert "| `python -m training vae --beta 0.8` with `res_blocks=2` | 30 |" in text
    assert "/tmp/x" not in text
