"""How recognisable and how varied a VAE's samples are, by the judge (bench/studies/judge.py),
as Markdown.

Real held-out digits are scored alongside as the reference. Prior samples: 2,000 codes from a
generator seeded with 0, as /generate draws them; labelled samples: 200 of every digit, asked
for with ``label``, as /generate does. Precision, recall and FID: 1,000 of those images (every
other one; with ``label``, 100 of every digit) against the 1,000 held-out digits, and 1,000 real
training digits (100 of every digit) against them as the baseline.
"""

from __future__ import annotations

import torch

from service.models import Checkpoint

from .judge import fidelity, held_out_verdict, prior_samples, real_pairs, verdict

SAMPLES, PER_LABEL, SEED = 2000, 200, 0
GOALS = {"score": 8.5, "confident": 0.8, "agreement_min": 0.95}
FIDELITY_GOALS = {"precision": 0.85, "recall": 0.75, "fid": 15.0}
TEMPERATURES = (0.5, 0.7, 0.85, 1.0)


def generation_rows(checkpoint: Checkpoint, judge) -> list[tuple[str, dict]]:
    """(what was scored, the judge's verdict with ``precision``, ``recall`` and ``fid``) for
    real digits and the VAE's samples; the real row's fidelity is that of 1,000 training
    digits against the held-out ones."""
    model = checkpoint.model.eval()
    held_out, training = real_pairs()
    real = held_out_verdict(judge) | fidelity(judge, training, held_out)
    rows = [("real held-out digits (1,000)", real)]
    standard = prior_samples(model, SAMPLES, SEED, standard_normal=True)
    rows.append((f"`{checkpoint.name}` samples from N(0, I)", _judged(judge, standard, held_out)))
    if model.prior is not None:
        fitted = prior_samples(model, SAMPLES, SEED)
        temperature = model.prior.temperature
        rows.append(
            (
                f"`{checkpoint.name}` samples from its fitted prior, temperature {temperature:g}",
                _judged(judge, fitted, held_out),
            )
        )
        labels = torch.arange(model.prior.labels).repeat_interleave(PER_LABEL)
        asked = prior_samples(model, len(labels), SEED, labels=labels)
        rows.append(
            (
                f"`{checkpoint.name}` with `label`, 200 per digit",
                _judged(judge, asked, held_out, labels),
            )
        )
    return rows


def _judged(judge, images, held_out, labels=None) -> dict:
    return verdict(judge, images, labels) | fidelity(judge, images[::2], held_out)


def temperature_rows(checkpoint: Checkpoint, judge, temperatures=TEMPERATURES) -> list[dict]:
    """The fitted prior's samples at every temperature: the judge's verdict on 2,000 of them,
    ``agreement_min`` of 200 per digit asked for with ``label``, and precision, recall and FID
    of 1,000 of them; one dict per temperature, with its ``temperature``."""
    model = checkpoint.model.eval()
    held_out, _ = real_pairs()
    labels = torch.arange(model.prior.labels).repeat_interleave(PER_LABEL)
    rows = []
    for t in temperatures:
        images = prior_samples(model, SAMPLES, SEED, temperature=t)
        asked = prior_samples(model, len(labels), SEED, labels=labels, temperature=t)
        agreement = verdict(judge, asked, labels)["agreement_min"]
        rows.append(
            {"temperature": t, **_judged(judge, images, held_out), "agreement_min": agreement}
        )
    return rows


def fidelity_table(rows: list[tuple[str, dict]]) -> str:
    """Precision, recall and FID of the rows as a Markdown table, the real baseline first."""
    lines = ["| images | precision | recall | FID (judge's features) |", "|---|---|---|---|"]
    for name, v in rows:
        shown = "1,000 real training digits (100 per digit)" if name.startswith("real") else name
        lines.append(f"| {shown} | {v['precision']:.2f} | {v['recall']:.2f} | {v['fid']:.1f} |")
    return "\n".join(lines)


def temperature_table(rows: list[dict], served: float) -> str:
    """The rows of ``temperature_rows`` as a Markdown table; the served temperature in bold."""
    lines = [
        "| temperature | precision | recall | FID | classifier score | judged with p > 0.9 "
        "| lowest agreement with `label` |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in rows:
        t = (
            f"**{v['temperature']:g} (served)**"
            if v["temperature"] == served
            else f"{v['temperature']:g}"
        )
        lines.append(
            f"| {t} | {v['precision']:.2f} | {v['recall']:.2f} | {v['fid']:.1f} | {v['score']:.2f} "
            f"| {100 * v['confident']:.1f}% | {100 * v['agreement_min']:.1f}% |"
        )
    return "\n".join(lines)


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
