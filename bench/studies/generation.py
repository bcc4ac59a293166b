"""How recognisable a VAE's samples are, by the judge (bench/studies/judge.py), as Markdown.

Real held-out digits are scored alongside as the reference. Prior samples: 2,000 codes from a
generator seeded with 0, as /generate draws them; labelled samples: 200 of every digit, asked
for with ``label``, as /generate does.
"""

from __future__ import annotations

import torch

from service.models import Checkpoint

from .judge import held_out_verdict, prior_samples, verdict

SAMPLES, PER_LABEL, SEED = 2000, 200, 0
GOALS = {"score": 8.5, "confident": 0.8, "agreement_min": 0.95}


def generation_rows(checkpoint: Checkpoint, judge) -> list[tuple[str, dict]]:
    """(what was scored, the judge's verdict) for real digits and the VAE's samples."""
    model = checkpoint.model.eval()
    rows = [("real held-out digits (1,000)", held_out_verdict(judge))]
    standard = prior_samples(model, SAMPLES, SEED, standard_normal=True)
    rows.append((f"`{checkpoint.name}` samples from N(0, I)", verdict(judge, standard)))
    if model.prior is not None:
        fitted = prior_samples(model, SAMPLES, SEED)
        rows.append((f"`{checkpoint.name}` samples from its fitted prior", verdict(judge, fitted)))
        labels = torch.arange(model.prior.labels).repeat_interleave(PER_LABEL)
        asked = prior_samples(model, len(labels), SEED, labels=labels)
        rows.append(
            (f"`{checkpoint.name}` with `label`, 200 per digit", verdict(judge, asked, labels))
        )
    return rows


def generation_table(rows: list[tuple[str, dict]]) -> str:
    """The rows as a Markdown table: score, confident share, agreement, histogram."""
    lines = [
        "| images | classifier score | judged with p > 0.9 | agrees with label (lowest digit) "
        "| class histogram 0-9 |",
        "|---|---|---|---|---|",
    ]
    for name, v in rows:
        agreement = (
            f"{100 * v['agreement_min']:.1f}% (digit {v['agreement'].index(v['agreement_min'])})"
            if "agreement" in v
            else ""
        )
        histogram = " ".join(str(c) for c in v["histogram"])
        lines.append(
            f"| {name} | {v['score']:.2f} | {100 * v['confident']:.1f}% | {agreement} "
            f"| {histogram} |"
        )
    return "\n".join(lines)


def agreement_line(rows: list[tuple[str, dict]]) -> str:
    """Per-digit agreement of the labelled row, for the record."""
    for name, v in rows:
        if "with `label`" in name:
            shares = ", ".join(f"{d}: {100 * a:.1f}%" for d, a in enumerate(v["agreement"]))
            return f"Agreement with the requested digit, per digit: {shares}."
    return ""


def save_sample_grids(checkpoint: Checkpoint, path) -> None:
    """A PNG: 40 samples from N(0, I), 40 from the fitted prior, and 8 of every label."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from torchvision.utils import make_grid

    model = checkpoint.model.eval()
    panels = [
        ("N(0, I), the prior it was trained against", prior_samples(model, 40, SEED, None, True))
    ]
    if model.prior is not None:
        panels.append(("its fitted prior (what /generate samples)", prior_samples(model, 40, SEED)))
        labels = torch.arange(model.prior.labels).repeat(8)
        panels.append(
            ("label 0..9, one column each", prior_samples(model, len(labels), SEED, labels))
        )
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4))
    for ax, (title, images) in zip(list(axes) if len(panels) > 1 else [axes], panels, strict=True):
        ax.imshow(
            make_grid(images, nrow=10 if "label" in title else 8, pad_value=0.5)[0], cmap="gray"
        )
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
