"""What a training run leaves beside its checkpoint for people: pictures and a summary table."""

from __future__ import annotations

from pathlib import Path

import torch

from service.engine.imaging import encode_png, grid
from service.models import Checkpoint, to_intensities


def plot_losses(history: list[dict], path: Path) -> None:
    """Train and held-out losses per epoch as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs = [row["epoch"] for row in history]
    names = [k for k in history[0] if k.startswith(("train_", "test_")) and k != "test_accuracy"]
    fig, ax = plt.subplots(figsize=(7, 4))
    for name in names:
        ax.plot(epochs, [row[name] for row in history], marker="o", label=name)
    ax.set_xlabel("epoch")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@torch.no_grad()
def save_reconstructions(checkpoint: Checkpoint, inputs: torch.Tensor, path: Path) -> None:
    """A grid of held-out inputs (N, 1, H, W) above their reconstructions."""
    model = checkpoint.model.eval()
    device = next(model.parameters()).device
    x = inputs.to(device)
    x_range = (x.flatten(1).min(1).values, x.flatten(1).max(1).values)
    logits = model(x)
    logits = logits[0] if isinstance(logits, tuple) else logits
    pixels = checkpoint.normalisation.denormalise(x).clamp(0, 1)
    rows = torch.cat([pixels, to_intensities(logits, model.assumption, x_range)])
    Path(path).write_bytes(encode_png(grid(rows.cpu(), len(inputs), padding=1)))


@torch.no_grad()
def save_samples(checkpoint: Checkpoint, path: Path, n: int = 64, seed: int = 0) -> None:
    """A grid of ``n`` images decoded from the prior (the fitted one when there is one)."""
    model = checkpoint.model.eval()
    latent = checkpoint.config.latent_features
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    images = model.decode(model.sample_prior(n, latent, generator).to(device))
    Path(path).write_bytes(encode_png(grid(images.cpu(), 8, padding=1)))


def summary_table(history: list[dict]) -> str:
    """Epochs as rows, metrics as columns, in plain text."""
    names = list(history[0])
    width = max(10, *(len(n) for n in names))
    lines = ["  ".join(f"{n:>{width}}" for n in names)]
    for row in history:
        cells = [
            f"{row[n]:>{width}.4g}" if isinstance(row[n], float) else f"{row[n]:>{width}}"
            for n in names
        ]
        lines.append("  ".join(cells))
    return "\n".join(lines)
