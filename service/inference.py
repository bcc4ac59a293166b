"""Batched forward passes: what the batcher runs, one function per operation.

Each function takes the payloads of several requests (tensors already decoded and normalised
on the CPU), runs them as one batch on the model's device under ``torch.inference_mode()`` and
returns one CPU result per request, in order.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch

from .models import Visualisation
from .models.losses import sample_range
from .registry import ServedModel


@dataclass
class Reconstruction:
    images: torch.Tensor  # (n, C, H, W) intensities in [0, 1]
    mean: torch.Tensor | None = None  # (n, latent) for a VAE
    log_var: torch.Tensor | None = None


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True)
    return x


def _sizes(payloads: Sequence[torch.Tensor]) -> list[int]:
    return [len(p) for p in payloads]


def reconstruct(model: ServedModel, payloads: list[torch.Tensor], device) -> list[Reconstruction]:
    """Payloads: (n_i, C, H, W) normalised inputs."""
    net = model.checkpoint.model
    x = _to_device(torch.cat(payloads), device)
    if model.kind == "vae":
        mean, log_var = net.encode(x)
        # the deterministic reconstruction: decode the latent mean
        images = net.decode(mean, sample_range(x)).cpu()
        parts = zip(
            images.split(_sizes(payloads)),
            mean.cpu().split(_sizes(payloads)),
            log_var.cpu().split(_sizes(payloads)),
            strict=True,
        )
        return [Reconstruction(i, m, v) for i, m, v in parts]
    images = net.reconstruct(x).cpu()
    return [Reconstruction(i) for i in images.split(_sizes(payloads))]


def generate(model: ServedModel, payloads: list[torch.Tensor], device) -> list[torch.Tensor]:
    """Payloads: (n_i, latent) codes, already sampled; returns (n_i, C, H, W) images."""
    z = _to_device(torch.cat(payloads), device)
    images = model.checkpoint.model.decode(z).cpu()
    return list(images.split(_sizes(payloads)))


def visualise(
    model: ServedModel,
    payloads: list[torch.Tensor],
    device,
    layer: int,
    k: int,
    channel: int | None,
) -> list[Visualisation]:
    """Payloads: (1, C, H, W) normalised images; every one keeps its own top-k."""
    x = _to_device(torch.cat(payloads), device)
    vis = model.deconv.visualise(x, layer, k, channel)
    fields = (vis.projection, vis.channel, vis.y, vis.x, vis.value)
    cpu = [t.cpu() for t in fields]
    return [
        Visualisation(*(t[i : i + 1] for t in cpu), activation_shape=vis.activation_shape)
        for i in range(len(payloads))
    ]


def make_predict(model: ServedModel, device: torch.device):
    """The ``predict(key, payloads)`` of a model's batcher; the key's first item names the
    operation and the rest are the parameters that the whole batch shares."""

    def predict(key: Hashable, payloads: list) -> list:
        operation, *params = key
        try:
            with torch.inference_mode():
                if operation == "reconstruct":
                    return reconstruct(model, payloads, device)
                if operation == "generate":
                    return generate(model, payloads, device)
                return visualise(model, payloads, device, *params)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()  # the batcher retries smaller halves
            raise

    return predict
