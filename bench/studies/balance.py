"""Exercise 6: how to balance reconstruction and regularisation?

Trains the default VAE (the ``vae`` recipe) once per KL weight beta, from 0.1 to 10, and writes
``docs/balance.md``: the held-out rate-distortion curve (KL against reconstruction, both in nats
per image) as ``docs/images/balance-rate-distortion.png``, sample grids per beta from N(0, I) and
from the fitted prior as ``docs/images/balance-samples.png``, and the judge's score of each
(bench/studies/judge.py).

Usage: ``python -m bench.studies.balance [--epochs 3] [--max-batches N] [--betas 0.1 0.3 1 2 4 10]``
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from tqdm import tqdm

from service.models import load_checkpoint
from training.recipes import RECIPES

from .common import machine_line, pyplot, study_parser, train_variant
from .judge import load_or_train_judge, prior_samples, verdict

BETAS = (0.1, 0.3, 1.0, 2.0, 4.0, 10.0)
CURVE, GRIDS = "images/balance-rate-distortion.png", "images/balance-samples.png"


def save_curve(results: dict[float, dict], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    kl = [r["kl"] for r in results.values()]
    rec = [r["loss"] for r in results.values()]
    ax.plot(kl, rec, marker="o")
    for beta, x, y in zip(results, kl, rec, strict=True):
        ax.annotate(f"β={beta:g}", (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel("rate: held-out KL(q(z|x) || N(0, I)), nats")
    ax.set_ylabel("distortion: held-out reconstruction, nats")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_grids(samples: dict[float, tuple[torch.Tensor, torch.Tensor]], path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(len(samples), 2, figsize=(10, 0.75 * len(samples) + 0.5))
    for row, (beta, pair) in zip(axes, samples.items(), strict=True):
        for ax, images, title in zip(row, pair, ("N(0, I)", "fitted prior"), strict=True):
            ax.imshow(torch.cat(list(images[:, 0]), dim=1), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"β={beta:g}, {title}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(betas, epochs: int, max_batches, judge) -> tuple[dict, dict]:
    results, samples = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for beta in tqdm(betas, desc="beta", unit="model"):
            path, last = train_variant(
                Path(tmp),
                "vae",
                f"vae-beta{beta:g}",
                epochs,
                max_batches,
                beta=beta,
                progress=False,
            )
            model = load_checkpoint(path).model
            standard = prior_samples(model, 2000, 0, standard_normal=True)
            fitted = prior_samples(model, 2000, 0)
            results[beta] = {k[5:]: v for k, v in last.items() if k.startswith("test_")} | {
                "judge_standard": verdict(judge, standard),
                "judge_fitted": verdict(judge, fitted),
            }
            samples[beta] = (standard[:12], fitted[:12])
    return results, samples


def table(results: dict[float, dict]) -> str:
    lines = [
        "| β | KL (rate) | reconstruction (distortion) | neg. ELBO | neg. ELBO, fitted prior "
        "| judge score N(0, I) | p > 0.9 N(0, I) | judge score fitted | p > 0.9 fitted |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for beta, r in results.items():
        s, f = r["judge_standard"], r["judge_fitted"]
        lines.append(
            f"| {beta:g} | {r['kl']:.1f} | {r['loss']:.1f} | {r['neg_elbo']:.1f} "
            f"| {r['neg_elbo_fitted']:.1f} | {s['score']:.2f} | {100 * s['confident']:.0f}% "
            f"| {f['score']:.2f} | {100 * f['confident']:.0f}% |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = study_parser(__doc__.splitlines()[0], epochs=3)
    parser.add_argument("--betas", type=float, nargs="+", default=list(BETAS))
    args = parser.parse_args()
    results, samples = run(args.betas, args.epochs, args.max_batches, load_or_train_judge())
    (args.docs / "images").mkdir(parents=True, exist_ok=True)
    save_curve(results, args.docs / CURVE)
    save_grids(samples, args.docs / GRIDS)
    command = f"python -m bench.studies.balance --epochs {args.epochs}" + (
        f" --max-batches {args.max_batches}" if args.max_batches else ""
    )
    best = min(results, key=lambda b: results[b]["neg_elbo"])
    text = (
        "# Exercise 6: balancing reconstruction and regularisation\n\n"
        "The default VAE trained with the KL term weighted by β (β = 1 is the negative ELBO). "
        "Held out: KL to N(0, I) and reconstruction, nats per image (one latent sample); the "
        "judge (bench/studies/judge.py) scores 2,000 samples (seed 0) from N(0, I) and from the "
        "prior fitted after training (service/models/prior.py, at the recipe's sampling "
        "temperature "
        f"{RECIPES['vae'].config.prior_temperature}).\n\n"
        f"{machine_line(command, args.epochs, args.max_batches)}\n\n{table(results)}\n\n"
        f"Lowest held-out negative ELBO in this run: β = {best:g}.\n\n"
        "The defaults use β = 1: the held-out goal is stated for the negative ELBO, which "
        "β = 1 optimises, and the fitted prior (not a larger β) makes the samples "
        "recognisable.\n\n"
        f"![rate-distortion]({CURVE})\n\n![samples per β]({GRIDS})\n\n"
    )
    (args.docs / "balance.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
