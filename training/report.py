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
    """A grid of ``n`` images decoded from the prior (the fitted one when there is one), at the
    model's pixel temperature, as /generate renders them."""
    model = checkpoint.model.eval()
    latent = checkpoint.config.latent_features
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    z = model.sample_prior(n, latent, generator).to(device)
    images = model.decode(z, pixel_temperature=model.pixel_temperature)
    Path(path).write_bytes(encode_png(grid(images.cpu(), 8, padding=1)))


# the table fits a 100-column terminal: short labels under a row that names their group
_SHORT = {
    "seconds": "s",
    "reconstruction": "rec",
    "regularisation": "reg",
    "neg_elbo": "-elbo",
    "cross_entropy": "xent",
    "accuracy": "acc",
}
_CELL = 6  # characters of a cell at least: ``.4g`` numbers are mostly this wide


def summary_table(history: list[dict], header: bool = True) -> str:
    """
    Epochs as rows, metrics as columns, in plain text at most 100 columns wide (12 metrics).

    Parameters
    ----------
    history : one dict per epoch, the same keys in each (``epoch``, ``seconds``, ``cpu_seconds``,
        ``train_*``, ``test_*``, ``test_*_fitted``)
    header : start with the two header rows (the column groups, then the metrics); without them
        the rows line up under a header printed before
    """
    names = [n for n in history[0] if n != "cpu_seconds"]  # in the checkpoint, not the table
    widths = [max(_CELL, len(_label(n))) for n in names]
    lines = [_groups(names, widths), _row(map(_label, names), widths)] if header else []
    for epoch in history:
        lines.append(_row((_cell(epoch[n]) for n in names), widths))
    return "\n".join(lines)


def _group(name: str) -> str:
    if name.startswith("train_"):
        return "train"
    if name.startswith("test_"):
        return "fitted prior" if name.endswith("_fitted") else "held-out"
    return ""


def _label(name: str) -> str:
    short = name.removeprefix("train_").removeprefix("test_").removesuffix("_fitted")
    return _SHORT.get(short, short)


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _row(cells, widths: list[int]) -> str:
    return "  ".join(f"{cell:>{width}}" for cell, width in zip(cells, widths, strict=True))


def _groups(names: list[str], widths: list[int]) -> str:
    """The group names, each centred over its run of columns."""
    spans: list[list] = []  # [group, width]
    for name, width in zip(names, widths, strict=True):
        if spans and spans[-1][0] == _group(name):
            spans[-1][1] += 2 + width
        else:
            spans.append([_group(name), width])
    return "  ".join(group.center(width) for group, width in spans).rstrip()
