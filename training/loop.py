"""One epoch of training and one pass of held-out evaluation, for every model kind."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.nn import functional as F

from service.models import (
    Normalisation,
    ReconstructionLoss,
    RegularisedLoss,
    VariationalAutoEncoder,
    kl_divergence,
    sample_range,
    to_intensities,
)
from service.models.prior import gaussian_log_prob


def make_criterion(kind: str, assumption: str | None, beta: float = 1.0) -> nn.Module:
    """The training loss of a model kind: cross-entropy, reconstruction, or reconstruction + KL."""
    if kind == "classifier":
        return nn.CrossEntropyLoss()
    reconstruction = ReconstructionLoss(assumption)
    if kind == "vae":
        return RegularisedLoss(reconstruction, VariationalAutoEncoder.regularisation, weight=beta)
    return reconstruction


def train_one_epoch(
    model: nn.Module,
    batches: Iterable,
    optimiser: torch.optim.Optimizer,
    criterion: nn.Module,
    device: torch.device,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    max_batches: int | None = None,
) -> dict[str, float]:
    """
    Update ``model`` on every batch of ``batches``; returns the epoch's mean losses.

    Returns
    -------
    losses : dict
        ``loss``, and for a ``RegularisedLoss`` also ``reconstruction`` and ``regularisation``
        (the unweighted KL), each averaged over the batches.
    """
    model.train()
    errs = []
    for step, (x, y) in enumerate(batches):
        if max_batches is not None and step >= max_batches:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        err = criterion(model(x), y)
        optimiser.zero_grad(set_to_none=True)
        err.backward()
        optimiser.step()
        if scheduler is not None:
            scheduler.step()
        errs.append(err.item())
    if not errs:
        raise ValueError("no batches to train on")
    losses = {"loss": sum(errs) / len(errs)}
    if isinstance(criterion, RegularisedLoss):
        rec, reg = criterion.split_loss(errs)
        losses |= {"reconstruction": rec.mean().item(), "regularisation": reg.mean().item()}
    return losses


@torch.no_grad()
def evaluate(
    model: nn.Module,
    kind: str,
    batches: Iterable,
    device: torch.device,
    assumption: str | None = None,
    normalisation: Normalisation | None = None,
    seed: int = 0,
    prior_fitted: bool = True,
) -> dict[str, float]:
    """
    Held-out metrics, averaged per image.

    Classifiers: ``accuracy`` and ``cross_entropy``. Auto-encoders: ``mse`` and ``bce`` between
    the decoded intensities and the pixels, both in [0, 1] pixel space and per pixel, and
    ``loss`` (the training reconstruction loss per image). VAEs also: ``kl`` and ``neg_elbo``
    (reconstruction summed over pixels plus KL, in nats for binomial/binary, one latent sample
    per image drawn from a generator seeded with ``seed``). VAEs with a fitted prior also:
    ``kl_fitted`` and ``neg_elbo_fitted``, the same with the KL to that prior, estimated from
    the same latent sample (log q(z|x) - log p(z)): the bound of the model /generate samples.
    Before its fit (``prior_fitted`` false) a prior is N(0, I) in each of its components, so its
    density is taken as N(0, I)'s, the same number without a pass over thousands of them.
    """
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    criterion = None if kind == "classifier" else ReconstructionLoss(assumption)
    totals: dict[str, float] = {}
    count = 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        if kind == "classifier":
            metrics = _classifier_metrics(model(x), y)
        else:
            pixels = normalisation.denormalise(x).clamp(0, 1)
            metrics = _reconstruction_metrics(
                model, kind, x, y, pixels, criterion, generator, prior_fitted
            )
        for name, value in metrics.items():
            totals[name] = totals.get(name, 0.0) + value.sum().item()
        count += len(x)
    return {name: total / count for name, total in totals.items()}


def _classifier_metrics(logits, labels) -> dict[str, torch.Tensor]:
    return {
        "accuracy": (logits.argmax(1) == labels).float(),
        "cross_entropy": F.cross_entropy(logits, labels, reduction="none"),
    }


def _reconstruction_metrics(model, kind, x, targets, pixels, criterion, generator, prior_fitted):
    """Per-image metrics (N,) for an auto-encoder or VAE."""
    kl = kl_fitted = None
    if kind == "vae":
        mean, log_var = model.encode(x)
        z = VariationalAutoEncoder.sample(mean, log_var, generator)
        logits = model.decoder(z)
        kl = kl_divergence(mean, log_var)
        if model.prior is not None:
            zero = torch.zeros_like(z)
            log_p = model.prior.log_prob(z) if prior_fitted else gaussian_log_prob(z, zero, zero)
            kl_fitted = gaussian_log_prob(z, mean, log_var) - log_p
    else:
        logits = model(x)
    intensities = to_intensities(logits, model.assumption, sample_range(x))
    per_pixel = intensities[0].numel()
    eps = 1e-6
    bce = F.binary_cross_entropy(intensities.clamp(eps, 1 - eps), pixels, reduction="none")
    reconstruction = criterion.per_image(logits, targets)
    metrics = {
        "mse": F.mse_loss(intensities, pixels, reduction="none").flatten(1).sum(1) / per_pixel,
        "bce": bce.flatten(1).sum(1) / per_pixel,
        "loss": reconstruction,
    }
    if kl is not None:
        metrics |= {"kl": kl, "neg_elbo": reconstruction + kl}
    if kl_fitted is not None:
        metrics |= {"kl_fitted": kl_fitted, "neg_elbo_fitted": reconstruction + kl_fitted}
    return metrics
