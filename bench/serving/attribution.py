"""/attribute beside Captum: answers per second for occlusion and integrated gradients on the
cnn and on AlexNet (random weights, 224x224 inputs).

The service runs as users start it and is measured over HTTP at c=1 and c=8; Captum runs in
this process, one call at a time, at each setting of its batch (``internal_batch_size`` for
integrated gradients, ``perturbations_per_eval`` for occlusion), and its best is the figure
the service is compared with. Both answer the same image's map of its predicted class with the
service's defaults (50 steps; occlusion's window and stride of ``/models``), and neither runs
while the other is measured (``paused``).

Usage: ``python -m bench.serving.attribution [--seconds S]`` (a part of ``make bench``).
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
import warnings
from pathlib import Path

import torch
from captum.attr import IntegratedGradients, Occlusion
from torch import nn
from torchvision import models

from devkit.images import png_bytes
from service.engine.imaging import ImageSpec, decode_input
from service.models import (
    DEFAULT_STEPS,
    IMAGENET_NORMALISATION,
    TORCHVISION_NETWORKS,
    OcclusionDefaults,
    load_checkpoint,
)

from .load import Prepared, run_load
from .scenarios import run_async
from .server import paused, prepare_models, service

CASES = [(n, m) for n in ("cnn", "alexnet") for m in ("occlusion", "integrated_gradients")]
CONCURRENCY = (1, 8)
CAPTUM_BATCHES = (1, 8, 16, 32, 64, 128)


def _reference(model: nn.Module) -> nn.Module:
    """Captum's copy: its hooks need ReLUs that are not in place."""
    reference = copy.deepcopy(model).eval()
    for module in reference.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return reference


def _networks(env: dict) -> dict[str, tuple[nn.Module, bytes, torch.Tensor]]:
    """network -> (Captum's copy of the served weights, the image sent, its network input)."""
    cnn = load_checkpoint(Path(env["UNCONV_CHECKPOINT_DIR"]) / "cnn.json")
    digit = png_bytes(seed=1)
    alexnet = models.alexnet()
    weights = Path(env["TORCH_HOME"]) / "hub" / "checkpoints"
    path = weights / TORCHVISION_NETWORKS["alexnet"].weights_path.name
    alexnet.load_state_dict(torch.load(path, weights_only=True))
    photo = png_bytes((224, 224), "RGB", seed=2)
    spec = ImageSpec(3, 224, IMAGENET_NORMALISATION, 256)
    return {
        "cnn": (
            _reference(cnn.model),
            digit,
            decode_input(digit, "image/png", ImageSpec(1, 28, cnn.normalisation), 10**8),
        ),
        "alexnet": (_reference(alexnet), photo, decode_input(photo, "image/png", spec, 10**8)),
    }


def _captum_call(model: nn.Module, x: torch.Tensor, method: str, batch: int):
    target = int(model(x).argmax())
    if method == "integrated_gradients":
        ig = IntegratedGradients(model)
        return lambda: ig.attribute(
            x, target=target, n_steps=DEFAULT_STEPS, internal_batch_size=batch
        )
    occlusion, defaults, c = Occlusion(model), OcclusionDefaults.of(x.shape[-1]), x.shape[1]
    window, stride = (c, defaults.window, defaults.window), (c, defaults.stride, defaults.stride)
    return lambda: occlusion.attribute(
        x,
        sliding_window_shapes=window,
        strides=stride,
        target=target,
        perturbations_per_eval=batch,
    )


def captum_rate(model: nn.Module, x: torch.Tensor, method: str, batch: int, seconds: float):
    """Captum's answers per second at one batch setting: calls one after another for at least
    ``seconds`` (and at least two calls), after one to warm up."""
    call = _captum_call(model, x, method, batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        call()
        done, start = 0, time.perf_counter()
        while done < 2 or time.perf_counter() - start < seconds:
            call()
            done += 1
    return done / (time.perf_counter() - start)


def captum_best(
    model: nn.Module, x: torch.Tensor, method: str, seconds: float, batches=CAPTUM_BATCHES
) -> dict:
    """Captum's rate at every batch setting of ``batches``, and the best."""
    rates = {batch: captum_rate(model, x, method, batch, seconds) for batch in batches}
    best = max(rates, key=rates.get)
    return {"rates": rates, "best_batch": best, "answers_per_s": rates[best]}


def service_rate(url: str, request: Prepared, concurrency: int, seconds: float) -> dict:
    """The service's answers per second at ``concurrency``: each connection sends requests
    back to back until ``seconds`` have passed, and the time runs until the last answer, so
    that a request longer than the window still counts (one warm-up request first)."""
    result = run_async(run_load(url, request, concurrency, 10**6, seconds, warmup=1))
    return {
        "answers_per_s": result.requests / result.seconds,
        "requests": result.requests,
        "errors": result.errors,
    }


def attribution_versus_captum(
    env: dict, seconds: float, networks=("cnn", "alexnet"), batches=CAPTUM_BATCHES
) -> dict:
    """Every case of ``CASES``: Captum's best rate and the service's at each concurrency."""
    print("/attribute beside Captum", flush=True)
    chosen = {n: v for n, v in _networks(env).items() if n in networks}
    results = {}
    with service(env) as (url, process, _):
        for network, method in CASES:
            if network not in chosen:
                continue
            model, image, x = chosen[network]
            fields = {"network": network, "method": method, "format": "npy"}
            request = Prepared.multipart("/attribute", [image], fields)
            served = {c: service_rate(url, request, c, seconds) for c in CONCURRENCY}
            with paused([process.pid]):
                captum = captum_best(model, x, method, seconds / 4, batches)
            results[f"{network}_{method}"] = {"service": served, "captum": captum}
            print(f"  {network} {method}: {results[f'{network}_{method}']}", flush=True)
    return results


def _rates(row: dict) -> dict[int, float]:
    """The service's rate at each concurrency (keys are strings once read back from JSON)."""
    return {int(c): served["answers_per_s"] for c, served in row["service"].items()}


def goals(r: dict) -> list[tuple[str, str, bool]]:
    """At least Captum's best rate, for each case at each concurrency."""
    found = []
    for key, row in r.get("attribution", {}).items():
        captum = row["captum"]["answers_per_s"]
        network, method = key.split("_", 1)
        for c, served in row["service"].items():
            rate, errors = served["answers_per_s"], served["errors"]
            measured = f"{rate:.2f} / {captum:.2f} answers/s = {rate / captum:.2f}x"
            found.append(
                (
                    f"/attribute {network} {method}, c={c}: >= Captum's best",
                    measured + (f", {errors} errors" if errors else ""),
                    rate >= captum and not errors,
                )
            )
    return found


def report_lines(r: dict) -> list[str]:
    """docs/benchmarks.md's section on /attribute beside Captum."""
    found = r.get("attribution")
    if not found:
        return []
    lines = [
        "## /attribute beside Captum",
        "",
        "Answers per second for one image's map of its predicted class, the service's defaults "
        "(50 steps; occlusion's window and stride of `/models`): the service over HTTP at c=1 "
        "and c=8, Captum in process, one call at a time, at its best batch setting "
        "(`internal_batch_size` / `perturbations_per_eval`, of "
        f"{', '.join(str(b) for b in CAPTUM_BATCHES)}). Goal: at least Captum's rate at both "
        "concurrencies (bench/serving/attribution.py).",
        "",
        "| network, method | Captum (best batch) | service c=1 | service c=8 | c=1 / Captum | "
        "c=8 / Captum |",
        "|---|---|---|---|---|---|",
    ]
    for key, row in found.items():
        rates, captum = _rates(row), row["captum"]
        best = captum["answers_per_s"]
        one, eight = (rates[c] for c in CONCURRENCY)
        lines.append(
            f"| {key.replace('_', ' ', 1)} | {best:.2f} ({captum['best_batch']}) | {one:.2f} | "
            f"{eight:.2f} | {one / best:.2f}x | {eight / best:.2f}x |"
        )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--networks", nargs="+", default=["cnn", "alexnet"])
    parser.add_argument("--captum-batches", type=int, nargs="+", default=list(CAPTUM_BATCHES))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = prepare_models(Path(tmp))
        found = attribution_versus_captum(
            env, args.seconds, tuple(args.networks), tuple(args.captum_batches)
        )
        print(json.dumps(found, indent=2))


if __name__ == "__main__":
    main()
