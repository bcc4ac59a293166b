"""The ceiling: each endpoint's work in plain PyTorch, without HTTP, at the best batch size.

"model" is the forward pass alone; "codec" adds decoding the uploaded PNGs and encoding the
answer PNGs exactly as the service does (``service.imaging``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torchvision import models

from service.imaging import ImageSpec, decode_input, encode_png, grid, projection_to_image
from service.models import IMAGENET_NORMALISATION, MNIST_NORMALISATION, UndoableSequential
from training.recipes import RECIPES

BATCH_SIZES = (1, 8, 16, 32, 64, 128)


def _seconds(work: Callable[[], object], min_time: float = 0.4) -> float:
    """Mean seconds per call, after one warm-up call."""
    work()
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < min_time or calls < 3:
        work()
        calls += 1
    return elapsed / calls


def _best(per_batch: Callable[[int], Callable[[], object]], sizes=BATCH_SIZES) -> dict:
    rates = {bs: bs / _seconds(per_batch(bs)) for bs in sizes}
    best = max(rates, key=rates.get)
    return {
        "images_per_s": round(rates[best], 1),
        "batch_size": best,
        "by_batch_size": {str(k): round(v, 1) for k, v in rates.items()},
    }


@torch.inference_mode()
def reconstruct(png: bytes) -> dict:
    ae = RECIPES["ae"].config.build("binomial").eval()
    spec = ImageSpec(1, 28, MNIST_NORMALISATION)

    def model_only(bs):
        x = torch.randn(bs, 1, 28, 28)
        return lambda: ae.reconstruct(x)

    def with_codec(bs):
        def work():
            x = torch.cat([decode_input(png, "image/png", spec, 10**8) for _ in range(bs)])
            return [encode_png(image) for image in ae.reconstruct(x)]

        return work

    return {"model": _best(model_only), "codec": _best(with_codec)}


@torch.inference_mode()
def generate(n: int = 64) -> dict:
    vae = RECIPES["vae"].config.build("binomial").eval()
    z = torch.randn(n, RECIPES["vae"].config.latent_features)
    model = n / _seconds(lambda: vae.decode(z))
    codec = n / _seconds(lambda: encode_png(grid(vae.decode(z))))
    return {
        "model": {"images_per_s": round(model, 1), "batch_size": n},
        "codec": {"images_per_s": round(codec, 1), "batch_size": n},
    }


@torch.inference_mode()
def visualise(jpeg: bytes, layers=(2, 5, 12)) -> dict:
    torch.manual_seed(0)
    deconv = UndoableSequential(models.alexnet().features.eval())
    spec = ImageSpec(3, 224, IMAGENET_NORMALISATION, resize=256)
    results = {}
    for layer in layers:

        def model_only(bs, layer=layer):
            x = torch.randn(bs, 3, 224, 224)
            return lambda: deconv.visualise(x, layer, 9)

        def with_codec(bs, layer=layer):
            def work():
                x = torch.cat([decode_input(jpeg, "image/jpeg", spec, 10**8) for _ in range(bs)])
                vis = deconv.visualise(x, layer, 9)
                return [encode_png(projection_to_image(p)) for p in vis.projection]

            return work

        sizes = (1, 4, 16, 32)
        results[f"layer{layer}"] = {
            "model": _best(model_only, sizes),
            "codec": _best(with_codec, sizes),
        }
    return results
