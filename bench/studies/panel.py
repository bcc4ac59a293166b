"""Every judge's verdict on VAE samples: the panel of bench/studies/judges.py against the goals.

For every checkpoint given (``--vae NAME=PATH``; the seeds of one recipe share a NAME) and every
prior asked for (``--components`` Gaussians per digit, refitted as training fits them, and
``--temperatures``) and every pixel temperature (``--pixel-temperatures``) (by default the
checkpoint's own prior and temperatures, which is what /generate serves), each judge scores,
against the 1,000 held-out digits:

- 1,000 samples drawn from the prior as /generate draws them: precision and recall (k = 3) and
  FID in the judge's penultimate features, FID relative to the real-vs-real FID (1,000 training
  digits against the held-out ones) in the same features, the classifier score and the share
  judged with p > 0.9;
- 200 samples of every digit asked for with ``label``: the share the judge assigns to that digit
  (``agreement_min``: the lowest digit's).

One draw of 1,000 samples is a noisy measure: between generator seeds, one checkpoint's FID ratio
in the ResNet judge moved from 1.0x to 1.7x and its lowest agreement from 91% to 96%. So every
figure is the mean over ``--draws`` draws (generators seeded 0, 1, ...; agreements per digit over
all their samples, then the lowest), and each row also keeps every draw's figures (``draws``).

A row meets the goals (``GOALS``) when every judge's precision, recall, FID ratio and lowest
agreement meet them, the project judge's score and confident share meet the recognisability
goals of docs/training.md, and the checkpoint's held-out negative ELBO (N(0, I) prior) is at most
``NEG_ELBO``. Writes ``--out`` (JSON) and prints the table as Markdown.

Usage: ``python -m bench.studies.panel --vae NAME=CHECKPOINT [--vae ...] [--components 80,100]
[--temperatures 0.85,1] [--pixel-temperatures 0.75,1] [--draws 5] [--out docs/judges.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from service.models import MNIST_NORMALISATION, load_checkpoint
from training.prior import refit_prior

from .generation import GOALS as RECOGNISABLE
from .judge import fidelity, prior_samples, real_pairs, verdict
from .judges import JUDGES, held_out_accuracy, load_or_train

SAMPLES, PER_LABEL, DRAWS = 1000, 200, 5
GOALS = {"precision": 0.85, "recall": 0.75, "fid_ratio": 1.6, "agreement_min": 0.95}
NEG_ELBO = 105.0


def real_figures(judges: dict) -> dict:
    """Per judge: 1,000 real training digits against the held-out ones, and its accuracy."""
    held_out, training = real_pairs()
    return {
        name: fidelity(judge, training, held_out) | {"accuracy": held_out_accuracy(judge)}
        for name, judge in judges.items()
    }


def judged(
    model, judges: dict, real: dict, temperature: float, pixel_temperature: float, draws: int
) -> dict:
    """Every judge's figures (module docstring) of ``model``'s prior at ``temperature``, its
    images rendered at ``pixel_temperature``: the mean over ``draws`` draws, and each draw's."""
    each = [
        judged_once(model, judges, real, temperature, pixel_temperature, s) for s in range(draws)
    ]
    figures = {}
    for name in judges:
        runs = [e[name] for e in each]
        agreement = torch.tensor([r["agreement"] for r in runs]).mean(0)
        figures[name] = {k: sum(r[k] for r in runs) / draws for k in runs[0] if k != "agreement"}
        figures[name] |= {"agreement": agreement.tolist(), "agreement_min": agreement.min().item()}
        figures[name]["draws"] = [{k: v for k, v in r.items() if k != "agreement"} for r in runs]
    return figures


def judged_once(
    model, judges: dict, real: dict, temperature: float, pixel_temperature: float, seed: int
) -> dict:
    """Every judge's figures of one draw: generators seeded with ``seed``."""
    held_out, _ = real_pairs()
    temperatures = {"temperature": temperature, "pixel_temperature": pixel_temperature}
    images = prior_samples(model, SAMPLES, seed, **temperatures)
    labels = torch.arange(model.prior.labels).repeat_interleave(PER_LABEL)
    asked = prior_samples(model, len(labels), seed, labels=labels, **temperatures)
    figures = {}
    for name, judge in judges.items():
        seen = fidelity(judge, images, held_out) | verdict(judge, images)
        agreement = verdict(judge, asked, labels)
        figures[name] = {
            k: seen[k] for k in ("precision", "recall", "fid", "score", "confident")
        } | {
            "fid_ratio": seen["fid"] / real[name]["fid"],
            "agreement": agreement["agreement"],
            "agreement_min": agreement["agreement_min"],
        }
    return figures


@torch.no_grad()
def reconstructions(model, judges: dict, real: dict) -> dict:
    """Per judge: the decoded posterior means of the 1,000 training digits of ``real_pairs``
    against the held-out ones, the images the decoder makes of real digits' codes (no prior
    sampled): what the best prior could reach with this decoder."""
    held_out, training = real_pairs()
    mean, _ = model.encode(MNIST_NORMALISATION.normalise(training))
    images = model.decode(mean)
    figures = {}
    for name, judge in judges.items():
        seen = fidelity(judge, images, held_out)
        figures[name] = seen | {"fid_ratio": seen["fid"] / real[name]["fid"]}
    return figures


def meets(figures: dict, neg_elbo: float) -> bool:
    """Whether one row meets every goal in every judge (module docstring)."""
    ok = neg_elbo <= NEG_ELBO
    for v in figures.values():
        ok &= v["precision"] >= GOALS["precision"] and v["recall"] >= GOALS["recall"]
        ok &= v["fid_ratio"] <= GOALS["fid_ratio"] and v["agreement_min"] >= GOALS["agreement_min"]
    project = figures["project"]
    return bool(ok and all(project[k] >= RECOGNISABLE[k] for k in ("score", "confident")))


def study(
    name: str, path: Path, judges: dict, real: dict, components, temperatures, pixels, draws
) -> list:
    """One row per prior setting and pixel temperature of one checkpoint."""
    checkpoint = load_checkpoint(path)
    model, metadata = checkpoint.model.eval(), checkpoint.metadata
    history = metadata["history"]
    common = {
        "recipe": name,
        "checkpoint": str(path),
        "seed": metadata["seed"],
        "epochs": metadata["epochs"],
        "beta": metadata["beta"],
        "train_seconds": sum(row["seconds"] for row in history),
        "train_cpu_seconds": sum(row.get("cpu_seconds", 0.0) for row in history),
        "neg_elbo": metadata["metrics"]["neg_elbo"],
        "reconstructions": reconstructions(model, judges, real),
    }
    config = checkpoint.config
    served = config.prior_components, config.prior_temperature, model.pixel_temperature
    rows = []
    for c in components or (served[0],):
        if components:  # refitted even at the served size: the loop may have changed it
            refit_prior(model, c)
        for t in temperatures or (served[1],):
            for p in pixels or (served[2],):
                figures = judged(model, judges, real, t, p, draws)
                rows.append(
                    common
                    | {"components": c, "temperature": t, "pixel_temperature": p}
                    | {"served": (c, t, p) == served, "judges": figures}
                    | {"meets_goals": meets(figures, common["neg_elbo"])}
                )
    return rows


def _cell(v: dict) -> str:
    return (
        f"{v['precision']:.2f} / {v['recall']:.2f} / {v['fid']:.1f} ({v['fid_ratio']:.2f}x) "
        f"/ {100 * v['agreement_min']:.1f}%"
    )


def render(results: dict) -> str:
    """The real baselines and every row as Markdown tables."""
    judges = list(results["real"])
    lines = [
        "| judge | held-out accuracy | real: precision | recall | FID |",
        "|---|---|---|---|---|",
    ]
    for name, v in results["real"].items():
        lines.append(
            f"| {name} | {100 * v['accuracy']:.1f}% | {v['precision']:.2f} | {v['recall']:.2f} "
            f"| {v['fid']:.1f} |"
        )
    lines += [
        "",
        "| recipe | seed | neg. ELBO | per digit, temperature, pixel temperature | "
        + " | ".join(f"{j}: precision / recall / FID (x real) / lowest agreement" for j in judges)
        + " | score | all goals |",
        "|---|---|---|---|" + "---|" * len(judges) + "---|---|",
    ]
    for r in results["rows"]:
        cells = " | ".join(_cell(r["judges"][j]) for j in judges)
        lines.append(
            f"| {r['recipe']} | {r['seed']} | {r['neg_elbo']:.1f} | {r['components']}, "
            f"{r['temperature']:g}, {r.get('pixel_temperature', 1):g}"
            f"{' (served)' if r['served'] else ''} | {cells} "
            f"| {r['judges']['project']['score']:.2f} | {'yes' if r['meets_goals'] else 'no'} |"
        )
    spread = _spread_table(results["rows"], judges)
    return "\n".join(lines) + "\n\n" + spread + _reconstruction_table(results["rows"], judges)


def _spread_table(rows: list[dict], judges: list[str]) -> str:
    """Per row with several draws: each judge's lowest and highest recall, FID ratio and lowest
    agreement over the draws."""
    if not any(len(r["judges"][judges[0]].get("draws", [])) > 1 for r in rows):
        return ""

    def span(draws: list[dict], key: str, fmt: str) -> str:
        values = [d[key] for d in draws]
        return f"{format(min(values), fmt)}-{format(max(values), fmt)}"

    lines = [
        "Spread over the draws, lowest to highest: recall / FID (x real) / lowest agreement:\n",
        "| recipe | seed | per digit, temperature, pixel temperature | "
        + " | ".join(judges)
        + " |",
        "|---|---|---|" + "---|" * len(judges),
    ]
    for r in rows:
        cells = " | ".join(
            f"{span(d, 'recall', '.2f')} / {span(d, 'fid_ratio', '.2f')} / "
            f"{span([{'a': 100 * x['agreement_min']} for x in d], 'a', '.1f')}%"
            for d in (r["judges"][j]["draws"] for j in judges)
        )
        setting = f"{r['components']}, {r['temperature']:g}, {r.get('pixel_temperature', 1):g}"
        lines.append(f"| {r['recipe']} | {r['seed']} | {setting} | {cells} |")
    return "\n".join(lines) + "\n\n"


def _reconstruction_table(rows: list[dict], judges: list[str]) -> str:
    """Each checkpoint once: its decoded posterior means of training digits, in every judge."""
    lines = [
        "Decoded posterior means of 1,000 training digits against the held-out ones (the "
        "decoder's images of real codes, no prior sampled), each judge's precision / recall / "
        "FID (x real):\n",
        "| recipe | seed | " + " | ".join(judges) + " |",
        "|---|---|" + "---|" * len(judges),
    ]
    seen = set()
    for r in rows:
        if r["checkpoint"] in seen or "reconstructions" not in r:
            continue
        seen.add(r["checkpoint"])
        cells = " | ".join(
            f"{v['precision']:.2f} / {v['recall']:.2f} / {v['fid']:.1f} ({v['fid_ratio']:.2f}x)"
            for v in (r["reconstructions"][j] for j in judges)
        )
        lines.append(f"| {r['recipe']} | {r['seed']} | {cells} |")
    return "\n".join(lines) + "\n"


def _named(text: str) -> tuple[str, Path]:
    name, _, path = text.partition("=")
    return name, Path(path)


def _option(flag: str, values: tuple) -> str:
    return f" {flag} {','.join(f'{v:g}' for v in values)}" if values else ""


def _csv(kind):
    return lambda text: tuple(kind(part) for part in text.split(","))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", type=_named, action="append", required=True)
    parser.add_argument("--components", type=_csv(int), default=())
    parser.add_argument("--temperatures", type=_csv(float), default=())
    parser.add_argument("--pixel-temperatures", type=_csv(float), default=())
    parser.add_argument("--draws", type=int, default=DRAWS)
    parser.add_argument("--out", type=Path, default=Path("docs/judges.json"))
    args = parser.parse_args(argv)
    judges = {name: load_or_train(name) for name in JUDGES}
    real = real_figures(judges)
    rows = []
    for name, path in args.vae:
        grid = args.components, args.temperatures, args.pixel_temperatures
        rows += study(name, path, judges, real, *grid, args.draws)
    results = {
        "command": "python -m bench.studies.panel "
        + " ".join(f"--vae {n}={p}" for n, p in args.vae)
        + (f" --components {','.join(map(str, args.components))}" if args.components else "")
        + _option("--temperatures", args.temperatures)
        + _option("--pixel-temperatures", args.pixel_temperatures)
        + f" --draws {args.draws}",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, shared (load average "
        f"{os.getloadavg()[0]:.1f} as it started), torch {torch.__version__}",
        "goals": GOALS | {"neg_elbo": NEG_ELBO},
        "real": real,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))


if __name__ == "__main__":
    main()
