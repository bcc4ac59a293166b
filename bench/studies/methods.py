"""The visualiser's three methods side by side on the served cnn, and the four of /attribute:
docs/methods.json, its pictures and docs/methods.md, rendered from the JSON.

Usage: ``python -m bench.studies.methods [--checkpoint checkpoints/cnn] [--docs docs]``
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torchvision import models

from service.engine.imaging import projection_to_image
from service.models import (
    METHODS,
    MNIST_NORMALISATION,
    UndoableClassifier,
    UndoableSequential,
    load_checkpoint,
)
from training.data import load_mnist_5k

from . import attribution
from .common import pyplot

K = 9
STROKE_THRESHOLD = 0.5  # a pixel is on a stroke when its intensity (0 to 1) is above this
PICTURE_DIGITS = (50, 450, 750)  # held-out digits shown: a 0, a 4 and a 7
PAIRS = list(itertools.combinations(METHODS, 2))
COMMAND = "python -m bench.studies.methods"


def stroke_share(projection: torch.Tensor, strokes: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) projections, (N, 1, H, W) bool strokes -> (N,) the share of each
    projection's magnitude that falls on the digit's strokes (0 for an all-zero projection)."""
    magnitude = projection.abs().flatten(1)
    on = (magnitude * strokes.flatten(1)).sum(1)
    return on / magnitude.sum(1).clamp_min(1e-30)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, ...) x (N, ...) -> (N,) cosine similarity of each pair of projections."""
    return torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1), dim=1, eps=1e-30)


def _ms_per_image(seq: UndoableSequential, images: torch.Tensor, layer: int, method: str) -> float:
    """Median wall time of one image's projection, on one thread as the service runs it."""
    seq.visualise(images[:1], layer, K, method=method)  # warm up
    times = []
    for image in images.split(1):
        start = time.perf_counter()
        seq.visualise(image, layer, K, method=method)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def measure_cnn(features: torch.nn.Sequential, pixels: torch.Tensor, timed: int) -> list[dict]:
    """Every layer and method of the cnn on (N, 28, 28) uint8 digits."""
    intensities = pixels.float().unsqueeze(1) / 255  # (N, 1, 28, 28)
    x = MNIST_NORMALISATION.normalise(intensities)
    strokes = intensities > STROKE_THRESHOLD
    seq = UndoableSequential(features)
    rows = []
    for layer in range(1, len(seq) + 1):
        projections = {m: seq.visualise(x, layer, K, method=m).projection for m in METHODS}
        rows.append(
            {
                "layer": layer,
                "name": seq.layer_name(layer),
                "stroke_share": {
                    m: stroke_share(p, strokes).mean().item() for m, p in projections.items()
                },
                "cosine": {
                    f"{a}~{b}": cosine(projections[a], projections[b]).mean().item()
                    for a, b in PAIRS
                },
                "ms_per_image": {m: _ms_per_image(seq, x[:timed], layer, m) for m in METHODS},
            }
        )
    return rows


def measure_alexnet(repeats: int) -> dict[str, float]:
    """ms per (3, 224, 224) image at AlexNet's last layer (13), random weights, one thread."""
    torch.manual_seed(0)
    seq = UndoableSequential(models.alexnet().features.eval())
    images = torch.randn(repeats, 3, 224, 224)
    return {m: _ms_per_image(seq, images, 13, m) for m in METHODS}


def picture(features: torch.nn.Sequential, pixels: torch.Tensor, path: Path) -> None:
    """Rows: each picture digit under each method; columns: the input, then every layer."""
    plt = pyplot()
    intensities = pixels.float().unsqueeze(1) / 255
    x = MNIST_NORMALISATION.normalise(intensities)
    seq = UndoableSequential(features)
    rows = [(d, m) for d in range(len(pixels)) for m in METHODS]
    fig, axes = plt.subplots(
        len(rows), len(seq) + 1, figsize=(1.3 * (len(seq) + 1), 1.3 * len(rows))
    )
    for r, (d, method) in enumerate(rows):
        axes[r, 0].imshow(intensities[d, 0], cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_ylabel(method, fontsize=8)
        for layer in range(1, len(seq) + 1):
            projection = seq.visualise(x[d : d + 1], layer, K, method=method).projection[0]
            image = projection_to_image(projection)[0]
            axes[r, layer].imshow(image, cmap="gray", vmin=0, vmax=1)
            if r == 0:
                axes[r, layer].set_title(f"layer {layer}", fontsize=8)
    axes[0, 0].set_title("input", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(pad=0.3)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _tables(data: dict) -> list[str]:
    methods = list(METHODS)
    lines = [
        "| layer | " + " | ".join(f"on strokes: {m}" for m in methods) + " | "
        + " | ".join(f"cosine {p}" for p in data["layers"][0]["cosine"]) + " |",
        "|" + "---|" * (1 + len(methods) + len(PAIRS)),
    ]  # fmt: skip
    for row in data["layers"]:
        shares = " | ".join(_pct(row["stroke_share"][m]) for m in methods)
        cosines = " | ".join(f"{c:.3f}" for c in row["cosine"].values())
        lines.append(f"| {row['name']} | {shares} | {cosines} |")
    lines += [
        "",
        "Milliseconds per image (median over single-image calls, one thread, as the service "
        "runs a batch of one):",
        "",
        "| network, layer | " + " | ".join(methods) + " |",
        "|" + "---|" * (1 + len(methods)),
    ]
    for row in data["layers"]:
        cost = " | ".join(f"{row['ms_per_image'][m]:.2f}" for m in methods)
        lines.append(f"| cnn, {row['layer']} | {cost} |")
    cost = " | ".join(f"{data['alexnet_ms_per_image'][m]:.1f}" for m in methods)
    lines.append(f"| AlexNet (random weights, 224x224), 13 | {cost} |")
    return lines


def _findings(data: dict) -> list[str]:
    """Sentences whose figures come from ``data``."""
    layers = data["layers"]
    same = [r["layer"] for r in layers if min(r["cosine"].values()) > 0.999999]
    last = layers[-1]
    share = last["stroke_share"]
    ranked = sorted(METHODS, key=lambda m: -share[m])
    lines = [
        f"- Up to layer {max(same)} the three projections are the same (every cosine is 1): "
        "the kept activations are positive and sit where each ReLU below was open, so "
        "rectifying and masking change nothing. They part from the first layer whose undo "
        "sends a signed signal through a ReLU."
        if same
        else "- The three projections differ at every layer.",
        f"- At the deepest layer ({last['layer']}) the share of the projection on the strokes "
        f"is {_pct(share[ranked[0]])} for {ranked[0]}, {_pct(share[ranked[1]])} for "
        f"{ranked[1]} and {_pct(share[ranked[2]])} for {ranked[2]}; a projection spread "
        f"evenly over the image would put {_pct(data['stroke_area'])} there.",
    ]
    for method in METHODS:
        first, deepest = layers[0]["stroke_share"][method], share[method]
        lines.append(
            f"- {method}: {_pct(first)} on the strokes at layer 1, {_pct(deepest)} at layer "
            f"{last['layer']}."
        )
    return lines


def render(data: dict) -> str:
    """docs/methods.md from docs/methods.json."""
    m = data["machine"]
    lines = [
        "# Deconvnet, guided backpropagation and saliency, side by side",
        "",
        "`/visualise` projects a layer's top-k activations back to pixel space with one of three "
        "methods (form field `method`). They share everything (the kept activations, the "
        "max-pooling switches, the transposed convolutions) except what each ReLU does to the "
        "signal `g` coming back down, for the ReLU's forward input `x`:",
        "",
        "| method | ReLU backward | paper |",
        "|---|---|---|",
        "| `deconvnet` (default) | `relu(g)` | Zeiler & Fergus (2014) |",
        "| `saliency` | `g * (x > 0)`: the true gradient | Simonyan et al. (2014) |",
        "| `guided_backprop` | `relu(g) * (x > 0)` | Springenberg et al. (2015) |",
        "",
        "Each is the gradient of the kept activations (sent back with their values, as the "
        "deconvnet does) with that ReLU rule, and the suite checks each against Captum's "
        "`Deconvolution`, `GuidedBackprop` and `Saliency` at every layer of the cnn, AlexNet "
        "and VGG-11 with random weights (tests/service/models/test_deconvnet.py).",
        "",
        "**`saliency` answers the signed gradient, not its magnitude.** Simonyan et al. take the "
        "magnitude (and the maximum over colour channels), which is Captum's default "
        "(`abs=True`). The service answers the signed value so that the three methods are "
        "the same kind of signed projection, drawn the same way (zero is mid-grey) and "
        "comparable number for number; the magnitude is one `abs()` away for a client "
        "(`format=npy`), while the sign cannot be recovered from the magnitude. The suite "
        "checks that the magnitude of the served answer is Captum's default saliency.",
        "",
        f"![The three methods on held-out digits at every layer of the cnn]({data['picture']})",
        "",
        f"Rows: {len(PICTURE_DIGITS)} held-out digits, each under the three methods; columns: "
        f"the input, then layers 1 to {len(data['layers'])} of the served cnn, k = {data['k']}.",
        "",
        *(attribution.section(data, METHODS) if "attribution" in data else []),
        "## Measured",
        "",
        f"Command: `{data['command']}`, which writes `docs/methods.json` (every figure here), "
        f"the picture and this file; run on {data['date']}. Machine: {m['machine']}, "
        f"{m['cores']} cores shared with other work (load average {m['load_average']:.1f} as it "
        f"finished, so the times are noisy), torch {m['torch']}. "
        f"The served cnn (`{data['checkpoint']}`), "
        f"{data['images']} held-out MNIST digits, k = {data['k']}. *On strokes*: the share of a "
        "projection's magnitude on pixels brighter than "
        f"{data['stroke_threshold']} (of 1), averaged over the digits; those pixels are "
        f"{_pct(data['stroke_area'])} of the image. *Cosine*: the mean cosine similarity of "
        "two methods' projections of the same digit.",
        "",
        *_findings(data),
        "",
        *_tables(data),
        "",
        f"Cost: the cnn's times are medians over {data['timed_images']} digits, AlexNet's over "
        f"{data['alexnet_images']} random images. The deconvnet keeps no ReLU masks; the other "
        "two keep one boolean per ReLU input and multiply by it on the way down.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("checkpoints/cnn"))
    parser.add_argument("--docs", type=Path, default=Path("docs"))
    parser.add_argument("--timed", type=int, default=200, help="digits timed one by one")
    parser.add_argument("--alexnet-images", type=int, default=10)
    parser.add_argument("--attribution-timed", type=int, default=20, help="digits, /attribute")
    parser.add_argument("--attribution-alexnet-images", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the service runs a one-image pass on one thread
    cnn = load_checkpoint(args.checkpoint).model.eval()
    features = cnn.features
    digits = load_mnist_5k().test_images  # (1000, 28, 28) uint8
    picture_path = args.docs / "images" / "methods-cnn.png"
    with torch.no_grad():
        picture(features, digits[list(PICTURE_DIGITS)], picture_path)
        layers = measure_cnn(features, digits, args.timed)
        alexnet = measure_alexnet(args.alexnet_images)
    found = attribution.measure(
        UndoableClassifier(features, cnn.classifier).eval(),
        digits,
        PICTURE_DIGITS,
        args.docs,
        args.attribution_timed,
        args.attribution_alexnet_images,
    )
    data = {
        "command": COMMAND,
        "date": time.strftime("%Y-%m-%d"),
        "machine": {
            "machine": platform.machine(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "load_average": os.getloadavg()[0],
        },
        "checkpoint": str(args.checkpoint),
        "images": len(digits),
        "k": K,
        "stroke_threshold": STROKE_THRESHOLD,
        "stroke_area": (digits.float() / 255 > STROKE_THRESHOLD).float().mean().item(),
        "picture": "images/methods-cnn.png",
        "timed_images": args.timed,
        "alexnet_images": args.alexnet_images,
        "layers": layers,
        "alexnet_ms_per_image": alexnet,
        "attribution": found,
    }
    (args.docs / "methods.json").write_text(json.dumps(data, indent=2) + "\n")
    (args.docs / "methods.md").write_text(render(data))


if __name__ == "__main__":
    main()
