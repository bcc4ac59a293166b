"""``python -m bench.studies.atlas_speed``: the atlas scan's images/s against the plain forward
pass of the same batches, and the ImageNet estimate of docs/atlas.md; writes docs/atlas.json.

Both passes run on the same prepared batches (data loading and the few projections apart), in
alternating rounds; each speed is the median round, the ratio the median of each round's scan
against the forward pass before it. The cnn scans mnist-5k's held-out digits;
AlexNet (random weights: the speed does not depend on them) scans random 224 x 224 images.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from service.models import MNIST_NORMALISATION, CNNConfig, resolve_device
from service.models.torchvision_nets import alexnet_features
from training.atlas_scan import empty_top, layer_shapes, scan_batch
from training.data import load_mnist_5k

IMAGENET_VALIDATION = 50_000
ALEXNET_MAPS = 64 * 3 + 192 * 3 + 384 * 2 + 256 * 4  # the feature maps of its 13 layers


def _rounds(features, batches: list[torch.Tensor], rounds: int, device) -> dict:
    """Median images/s of the plain forward pass and of the scan over ``batches``."""
    layers = list(range(1, len(features) + 1))
    shapes = layer_shapes(features, tuple(batches[0].shape[1:]))
    images = sum(len(b) for b in batches)
    timings: dict[str, list[float]] = {"forward": [], "scan": []}

    def forward():
        with torch.inference_mode():
            for x in batches:
                features(x)

    def scan():
        top = empty_top({n: shapes[n - 1] for n in layers}, 9, device)
        start = 0
        for x in batches:
            indices = torch.arange(start, start + len(x), device=device)
            top = scan_batch(features, x, indices, top)
            start += len(x)

    forward(), scan()  # warm up
    for _ in range(rounds):
        for name, run in (("forward", forward), ("scan", scan)):
            _sync(device)
            began = time.perf_counter()
            run()
            _sync(device)
            timings[name].append(images / (time.perf_counter() - began))
    result = {f"{k}_images_per_s": round(statistics.median(v), 1) for k, v in timings.items()}
    # each round's scan against the forward pass just before it: other work on the machine
    # slows both alike, which the median of the pairs' ratios leaves out
    ratios = [s / f for f, s in zip(timings["forward"], timings["scan"], strict=True)]
    result["scan_over_forward"] = round(statistics.median(ratios), 3)
    return result | {"images": images, "batch_size": len(batches[0]), "rounds": rounds}


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def cnn(device, rounds: int) -> dict:
    torch.manual_seed(0)
    features = CNNConfig().build().features.to(device).eval()
    digits = load_mnist_5k().test_images.unsqueeze(1).float().div(255)
    x = MNIST_NORMALISATION.normalise(digits).to(device)
    return _rounds(features, list(x.split(256)), rounds, device)


def alexnet(device, rounds: int, images: int) -> dict:
    torch.manual_seed(0)
    features = alexnet_features().to(device).eval()
    x = torch.randn(images, 3, 224, 224, device=device)
    return _rounds(features, list(x.split(16 if device.type == "cpu" else 64)), rounds, device)


def imagenet_estimate(gpu_json: Path) -> dict:
    """Hours for ImageNet's validation set from the H200 figure of docs/benchmarks-gpu.json:
    AlexNet layer 5's visualisation alone, batches of 64 (a forward pass to layer 5 and the
    projection back), taken as the rate of both the scan and the projections."""
    figure = json.loads(gpu_json.read_text())["gpu"]["model_alone_images_per_s"]["64"]
    scan_s = IMAGENET_VALIDATION / figure
    project_s = ALEXNET_MAPS * 9 / figure
    return {
        "source": f"{gpu_json}#gpu.model_alone_images_per_s.64",
        "h200_images_per_s": figure,
        "scan_s": round(scan_s, 1),
        "projections": ALEXNET_MAPS * 9,
        "project_s": round(project_s, 1),
        "one_gpu_s": round(scan_s + project_s, 1),
        "eight_gpus_s": round(scan_s / 8 + project_s, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--alexnet-images", type=int, default=64)
    parser.add_argument("--docs", type=Path, default=Path("docs"))
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads (one: steadier on a shared machine)"
    )
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    report = {
        "command": "python -m bench.studies.atlas_speed",
        "machine": {
            "cpu": platform.machine(),
            "cores": os.cpu_count(),
            "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
            "torch": torch.__version__,
            "threads": args.threads,
            "load_average_at_start": round(load, 2),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        },
        "cnn": cnn(device, args.rounds),
        "alexnet": alexnet(device, args.rounds, args.alexnet_images),
        "imagenet_estimate": imagenet_estimate(args.docs / "benchmarks-gpu.json"),
    }
    (args.docs / "atlas.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
