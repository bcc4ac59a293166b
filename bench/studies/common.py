"""What the two studies (bench.studies.assumptions, bench.studies.balance) share: training runs
and figures."""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from training.train import TrainOptions, train


def study_parser(description: str, epochs: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--epochs", type=int, default=epochs, help="epochs per model")
    parser.add_argument(
        "--max-batches", type=int, default=None, help="batches per epoch (all when absent)"
    )
    parser.add_argument("--docs", type=Path, default=Path("docs"))
    return parser


def train_variant(out: Path, model: str, name: str, epochs: int, max_batches, **options):
    """Train one variant of a recipe; returns (checkpoint path, last history row)."""
    result = train(
        TrainOptions(
            model=model,
            out=out,
            name=name,
            epochs=epochs,
            max_batches=max_batches,
            artefacts=False,
            **options,
        )
    )
    return result.checkpoint, result.history[-1]


def machine_line(command: str, epochs: int, max_batches) -> str:
    """Where, when and with which budget a study ran, for its Markdown file."""
    budget = f"{epochs} epoch(s)" + (
        f" of at most {max_batches} batches" if max_batches else " over all 4,000 training digits"
    )
    return (
        f"Command: `{command}`, run on {time.strftime('%Y-%m-%d')}; budget {budget} per model. "
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (load average "
        f"{os.getloadavg()[0]:.1f} as it finished), torch {torch.__version__}."
    )


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt
