"""Training quality benchmark: our default recipes against the pytorch/examples VAE recipe.

Trains, on the same ``mnist-5k`` split:
- the pytorch/examples VAE recipe (784-400-20 MLP, ReLU, BCE summed over pixels + KL, Adam 1e-3,
  batch 128, raw [0, 1] inputs, ``--epochs``), printing its held-out negative ELBO (one latent
  sample per image, nats per image);
- our defaults as a user trains them (``python -m training defaults``, timed): the ``vae``'s
  negative ELBO, the ``ae``'s held-out MSE in [0, 1] pixel space, the ``cnn``'s accuracy;
- how recognisable the default VAE's samples are, by an independent judge (bench/studies/judge.py),
  with real held-out digits as the reference (bench/studies/generation.py).

Writes ``docs/training.json`` (the figures) and ``docs/training.md`` (the report rendered from
them) side by side; other docs cite the JSON (tests/test_docs.py).

Usage: ``python -m bench.studies.training_quality [--epochs 10] [--out docs/training.md]``;
``--vae CHECKPOINT`` judges that checkpoint instead and rewrites only the generation section.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from service.models import MLPVAEConfig, VariationalAutoEncoder, load_checkpoint
from training.data import load_mnist_5k, to_pixels
from training.recipes import DEFAULT_MODELS

from .generation import (
    agreement_line,
    fidelity_table,
    generation_rows,
    generation_table,
    save_sample_grids,
    temperature_rows,
    temperature_table,
)
from .judge import load_or_train_judge

GENERATION = "## Generation"
SAMPLES_PNG = Path("docs/images/vae-samples-by-prior.png")

GOALS = {"vae": "<= 105 nats", "ae": "<= 0.0020", "cnn": ">= 97.5%"}
# the rows of bench.studies.generation.generation_rows, in order, as docs/training.json names them
GENERATION_ROLES = ("real", "standard_normal", "fitted_prior", "with_label")


def reference_vae(epochs: int, seed: int = 1806) -> tuple[float, float]:
    """The pytorch/examples recipe; returns (held-out negative ELBO, seconds)."""
    torch.manual_seed(seed)
    splits = load_mnist_5k()
    train_x, test_x = to_pixels(splits.train_images), to_pixels(splits.test_images)
    vae = MLPVAEConfig(hidden_features=400, latent_features=20, activation="relu").build("binomial")
    optimiser = torch.optim.Adam(vae.parameters(), lr=1e-3)
    started = time.perf_counter()
    for _ in range(epochs):
        vae.train()
        for batch in torch.randperm(len(train_x)).split(128):
            x = train_x[batch]
            logits, (mean, log_var) = vae(x)
            rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
            kl = -0.5 * torch.sum(1 + log_var - mean.pow(2) - log_var.exp())
            loss = (rec + kl) / len(x)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    seconds = time.perf_counter() - started
    vae.eval()
    with torch.no_grad():
        mean, log_var = vae.encode(test_x)
        z = VariationalAutoEncoder.sample(mean, log_var, torch.Generator().manual_seed(seed))
        rec = F.binary_cross_entropy_with_logits(vae.decoder(z), test_x, reduction="none")
        kl = -0.5 * (1 + log_var - mean.pow(2) - log_var.exp()).sum(1)
        return (rec.flatten(1).sum(1) + kl).mean().item(), seconds


def defaults(out: Path) -> tuple[dict[str, dict], dict]:
    """Run ``python -m training defaults`` as a user does; each model's final history row (held-out
    metrics as ``test_*``, ``epoch``, training ``seconds`` and ``cpu_seconds`` summed) and the
    command's cost: wall seconds, CPU seconds of its process and threads (on a shared machine
    the wall time counts the others' work too) and the load average as it started."""
    load, started = os.getloadavg()[0], time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        [sys.executable, "-m", "training", "defaults", "--out", str(out), "--no-progress"],
        check=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cost = {
        "wall": time.perf_counter() - started,
        "cpu": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
        "load": load,
    }
    results = {}
    for model in DEFAULT_MODELS:
        history = load_checkpoint(out / model).metadata["history"]
        results[model] = history[-1] | {
            key: sum(row.get(key, 0.0) for row in history) for key in ("seconds", "cpu_seconds")
        }
    return results, cost


def generation_section(checkpoint_path: Path, note: str = "") -> tuple[str, dict]:
    """The judge's verdicts on a VAE checkpoint: the Markdown section of docs/training.md, and
    the verdicts by role (``GENERATION_ROLES``, and ``temperatures``: the fitted prior at every
    temperature of the study) for docs/training.json."""
    checkpoint = load_checkpoint(checkpoint_path)
    judge = load_or_train_judge()
    rows = generation_rows(checkpoint, judge)
    SAMPLES_PNG.parent.mkdir(parents=True, exist_ok=True)
    save_sample_grids(checkpoint, SAMPLES_PNG)
    verdicts = {role: v for role, (_, v) in zip(GENERATION_ROLES, rows, strict=False)}
    prior = checkpoint.model.prior
    by_temperature = ""
    if prior is not None:
        verdicts["temperatures"] = temperature_rows(checkpoint, judge)
        by_temperature = (
            f"The fitted prior of the same checkpoint at other temperatures (`temperature` of "
            f"/generate; the same samples' sizes and seed):\n\n"
            f"{temperature_table(verdicts['temperatures'], prior.temperature)}\n\n"
        )
    metrics = checkpoint.metadata.get("metrics", {})
    bound = (
        f" Held-out negative ELBO of this checkpoint: {metrics['neg_elbo']:.1f} nats with the "
        f"N(0, I) prior it was trained against, {metrics['neg_elbo_fitted']:.1f} nats with its "
        "fitted prior (KL estimated from the same latent sample; the density at temperature 1, "
        "which /generate samples at the config's `prior_temperature`)."
        if "neg_elbo_fitted" in metrics
        else ""
    )
    section = (
        f"{GENERATION}\n\n{note}"
        "Judge: a classifier of its own architecture, seed and recipe (bench/studies/judge.py), "
        "trained on the 4,000 training digits only. Classifier score: "
        "exp(E[KL(p(y|x) || p(y))]), 10 at "
        "best. Samples: 2,000 from the prior (seed 0); with `label`: 200 per digit. Goals: "
        "score >= 8.5, >= 80% judged with p > 0.9, >= 95% agreement for every digit.\n\n"
        f"{generation_table(rows)}\n\n{agreement_line(rows)}{bound}\n\n"
        "Fidelity and variety in the judge's hidden features (its 256 activations before the "
        "last layer): precision and recall (Kynkäänniemi et al. 2019, k = 3) and FID of 1,000 "
        "images (every other sample above; with `label`, 100 per digit) against the 1,000 "
        "held-out digits; the first row is 1,000 real training digits against them. Goals at "
        "the served defaults: precision >= 0.85, recall >= 0.75, FID <= 15.\n\n"
        f"{fidelity_table(rows)}\n\n{by_temperature}"
        f"![samples]({SAMPLES_PNG.relative_to('docs')})\n"
    )
    return section, verdicts


def _with_section(text: str, section: str) -> str:
    """``text`` with its generation section (up to the next ``## ``) replaced by ``section``."""
    if GENERATION not in text:
        return text.rstrip("\n") + "\n\n" + section
    head, _, rest = text.partition(GENERATION)
    tail = rest.find("\n## ")
    return head + section + (rest[tail:] if tail >= 0 else "")


def _hand_written(path: Path) -> str:
    """The sections of an existing ``path`` after the generated ones, kept on rewrites."""
    text = path.read_text() if path.is_file() else ""
    sections = text.split("\n## ")[1:]
    kept = [s for s in sections if not s.startswith(GENERATION[3:])]
    return "".join(f"\n## {s.rstrip()}\n" for s in kept)


def _judge_one(vae: Path, out: Path) -> None:
    """Rewrite only the generation section of ``out`` for the checkpoint ``vae``."""
    run = {
        "command": f"python -m bench.studies.training_quality --vae {vae}",
        "date": time.strftime("%Y-%m-%d"),
    }
    note = (
        f"Judged on {run['date']} (`{run['command']}`, a checkpoint of `python -m training vae`); "
        "the figures above this section are of the run named at the top.\n\n"
    )
    section, verdicts = generation_section(vae, note)
    print(section)
    text = out.read_text() if out.is_file() else "# Training quality\n"
    out.write_text(_with_section(text, section))
    figures = out.with_suffix(".json")
    results = json.loads(figures.read_text()) if figures.is_file() else {}
    results |= {"generation": verdicts, "generation_run": run}
    figures.write_text(json.dumps(results, indent=2) + "\n")


def _train_and_measure(epochs: int) -> tuple[dict, str]:
    """Train the reference VAE and our defaults; the figures (as docs/training.json holds them)
    and the generation section."""
    ref_elbo, ref_seconds = reference_vae(epochs)
    with tempfile.TemporaryDirectory() as tmp:
        ours, cost = defaults(Path(tmp))
        generation, verdicts = generation_section(Path(tmp) / "vae")
    vae, ae, cnn = ours["vae"], ours["ae"], ours["cnn"]
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    results = {
        "command": "python -m bench.studies.training_quality",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine,
        "reference_vae": {"neg_elbo": ref_elbo, "epochs": epochs, "seconds": ref_seconds},
        "vae": {
            "neg_elbo": vae["test_neg_elbo"],
            "neg_elbo_fitted": vae.get("test_neg_elbo_fitted"),
            "epochs": vae["epoch"],
            "seconds": vae["seconds"],
            "cpu_seconds": vae["cpu_seconds"],
        },
        "ae": {"mse": ae["test_mse"], "epochs": ae["epoch"], "seconds": ae["seconds"]},
        "cnn": {
            "accuracy": cnn["test_accuracy"],
            "epochs": cnn["epoch"],
            "seconds": cnn["seconds"],
        },
        "defaults_wall_seconds": cost["wall"],
        "defaults_cpu_seconds": cost["cpu"],
        "defaults_load_average": cost["load"],
        "generation": verdicts,
    }
    return results, generation


def results_table(results: dict) -> str:
    """The first table of docs/training.md and the wall-time line, from docs/training.json."""
    ref, vae, ae, cnn = (results[k] for k in ("reference_vae", "vae", "ae", "cnn"))
    rows = [
        (
            "pytorch/examples VAE (MLP 784-400-20)",
            "neg. ELBO",
            f"{ref['neg_elbo']:.1f} nats",
            ref,
            "reference",
        ),
        ("our default `vae`", "neg. ELBO", f"{vae['neg_elbo']:.1f} nats", vae, GOALS["vae"]),
        ("our default `ae`", "MSE [0,1]", f"{ae['mse']:.5f}", ae, GOALS["ae"]),
        ("our default `cnn`", "accuracy", f"{100 * cnn['accuracy']:.2f}%", cnn, GOALS["cnn"]),
    ]
    table = [
        "| model | held-out metric | value | epochs | train seconds | goal |",
        "|---|---|---|---|---|---|",
    ]
    table += [
        f"| {m} | {k} | {v} | {r['epochs']} | {r['seconds']:.0f} | {g} |" for m, k, v, r, g in rows
    ]
    cost = (
        f" ({results['defaults_cpu_seconds']:.0f} CPU seconds, its threads together; load "
        f"average {results['defaults_load_average']:.1f} on the machine as it started)"
        if "defaults_cpu_seconds" in results
        else ""
    )
    return "\n".join(table) + (
        f"\n\n`python -m training defaults` (ae, vae and cnn, with evaluation after every "
        f"epoch, checkpoints and pictures) took **{results['defaults_wall_seconds']:.0f} s** of "
        f"wall time{cost}; goal: <= 300 s on two idle cores."
    )


def _write_report(out: Path, results: dict, generation: str) -> None:
    text = results_table(results)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    out.write_text(
        "# Training quality\n\n"
        f"The figures are in [{out.stem}.json]({out.stem}.json); this report is rendered from "
        "them. Held-out split of `mnist-5k`: the last 100 rows of every digit (1,000 images); "
        "training on the first 400 of every digit (4,000 images). Negative ELBO: reconstruction "
        "summed over pixels plus KL, one latent sample per image, nats per image. Train seconds "
        "count training epochs only, not evaluation.\n\n"
        f"Machine: {results['machine']}. Command: `{results['command']}`, run on "
        f"{results['date']}.\n\n{text}\n\n{generation}{_hand_written(out)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the reference VAE")
    parser.add_argument("--out", type=Path, default=Path("docs/training.md"))
    parser.add_argument(
        "--vae", type=Path, help="judge this VAE checkpoint only; keep the rest of --out"
    )
    args = parser.parse_args()
    if args.vae is not None:
        _judge_one(args.vae, args.out)
        return
    results, generation = _train_and_measure(args.epochs)
    _write_report(args.out, results, generation)
    if not math.isfinite(results["reference_vae"]["neg_elbo"]):
        raise SystemExit("reference VAE diverged")


if __name__ == "__main__":
    main()
