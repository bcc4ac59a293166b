"""Reconstruction assumptions and the losses that go with them.

An auto-encoder's *assumption* says how its output logits relate to pixels. It fixes three things
at once, kept together here so that training and serving can never disagree:

=========  ==============================  =========================  ==========================
name       targets (from pixels in [0, 1])  loss (per image)           logits -> intensities
=========  ==============================  =========================  ==========================
gauss      normalised like the inputs       squared error              clamp to input range,
                                                                       min-max per image
truncated  pixels                           squared error              clamp to [0, 1]
binomial   pixels, as probabilities         binary cross-entropy       sigmoid
binary     pixels > 0.5                     binary cross-entropy       logits > 0
=========  ==============================  =========================  ==========================

Losses are summed over the pixels of an image and averaged over the batch, the same reduction as
the VAE's KL term, so a ``RegularisedLoss`` weight of 1 is the negative ELBO.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

ASSUMPTIONS = ("gauss", "truncated", "binomial", "binary")


@dataclass(frozen=True)
class Normalisation:
    """Per-channel mean and standard deviation that inputs are normalised with."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def _shaped(self, like: torch.Tensor):
        shape = (1, -1, 1, 1)
        mean = torch.as_tensor(self.mean, dtype=like.dtype, device=like.device).view(shape)
        std = torch.as_tensor(self.std, dtype=like.dtype, device=like.device).view(shape)
        return mean, std

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """Map (N, C, H, W) pixels in [0, 1] to the network's input space."""
        mean, std = self._shaped(pixels)
        return (pixels - mean) / std

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        """Map (N, C, H, W) network inputs back to pixels (not clamped)."""
        mean, std = self._shaped(x)
        return x * std + mean


MNIST_NORMALISATION = Normalisation(mean=(0.1307,), std=(0.3081,))


def _check(assumption: str | None) -> None:
    if assumption not in ASSUMPTIONS:
        raise ValueError(f"expected assumption in {ASSUMPTIONS} but received {assumption!r}")


def target_transform(assumption: str, normalisation: Normalisation) -> Callable:
    """Pre-processing that turns (N, C, H, W) pixels in [0, 1] into training targets."""
    _check(assumption)
    if assumption == "gauss":
        return normalisation.normalise
    if assumption == "binary":
        return lambda pixels: (pixels > 0.5).to(pixels.dtype)
    return lambda pixels: pixels


class ReconstructionLoss(nn.Module):
    """
    The loss that matches an assumption, summed over pixels and averaged over the batch.

    Parameters
    ----------
    assumption : str
        One of ``ASSUMPTIONS``.
    """

    def __init__(self, assumption: str):
        super().__init__()
        _check(assumption)
        self.assumption = assumption

    def per_image(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss of every image (N,) between (N, ...) logits and targets."""
        if self.assumption in ("gauss", "truncated"):
            loss = F.mse_loss(logits, targets, reduction="none")
        else:
            loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        return loss.flatten(1).sum(1)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.per_image(logits, targets).mean()


def to_intensities(
    logits: torch.Tensor, assumption: str | None, x_range: tuple | None = None
) -> torch.Tensor:
    """
    Decode logits to pixel intensities according to an assumption.

    Parameters
    ----------
    logits : (N, ...) torch.Tensor
        Logits predicted by an auto-encoder.
    assumption : str or None
        One of ``ASSUMPTIONS``; ``None`` returns the logits unchanged.
    x_range : (min, max), optional
        For ``gauss``: the range the logits are clamped to first; scalars or (N,) tensors.

    Returns
    -------
    image : (N, ...) torch.Tensor
        Intensities in [0, 1]. For ``gauss`` every image is min-max scaled on its own, so the
        result never depends on what else is in the batch.
    """
    if assumption is None:
        return logits
    _check(assumption)
    if assumption == "gauss":
        if x_range is not None:
            low, high = (_per_sample(torch.as_tensor(v), logits) for v in x_range)
            logits = torch.clamp(logits, low, high)
        flat = logits.flatten(1)
        low = flat.min(1).values.view(-1, *[1] * (logits.dim() - 1))
        high = flat.max(1).values.view(-1, *[1] * (logits.dim() - 1))
        return (logits - low) / (high - low).clamp_min(torch.finfo(logits.dtype).eps)
    if assumption == "truncated":
        return logits.clamp(0, 1)
    if assumption == "binomial":
        return torch.sigmoid(logits)
    return (logits > 0).to(logits.dtype)


def _per_sample(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    value = value.to(device=like.device, dtype=like.dtype)
    return value.view(-1, *[1] * (like.dim() - 1)) if value.dim() else value


def sample_range(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (min, max) of a batch (N, ...), each of shape (N,)."""
    flat = x.flatten(1)
    return flat.min(1).values, flat.max(1).values


class RegularisedLoss(nn.Module):
    """
    Loss function for networks that expose state for regularisation.

    Every call remembers its regularisation value and the weight it was added with, so that
    ``split_loss`` can take a total apart again even after the weight has changed (as it does
    during a KL warm-up). Only the last ``max_cached`` calls are remembered.

    Examples
    --------
    A VAE's negative ELBO, with a weight (beta) on the KL term:
    >>> vae = MLPVAEConfig().build("binomial")
    >>> loss = RegularisedLoss(ReconstructionLoss("binomial"), vae.regularisation, weight=1.)
    >>> x = torch.rand(8, 1, 28, 28)
    >>> loss(vae(x), x)
    """

    def __init__(
        self,
        loss_func: nn.Module = None,
        reg_func: Callable | None = None,
        weight: float = 1.0,
        max_cached: int = 100_000,
    ):
        """
        Parameters
        ----------
        loss_func : nn.Module
            Standard loss function computed from logits and targets.
        reg_func : callable, optional
            Regularisation function computed from exposed network state.
        weight : float, optional
            Weighting factor for the regularisation.
        max_cached : int, optional
            How many of the latest (regularisation, weight) pairs ``split_loss`` can reach.
        """
        super().__init__()
        self.loss_func = loss_func
        self.regulariser = reg_func
        self.weight = weight
        self._regularisation_cache: deque[tuple[float, float]] = deque(maxlen=max_cached)

    def split_loss(self, total_loss):
        """
        Split total loss values in original loss and regularisation part.

        Parameters
        ----------
        total_loss : list or float
            One or more loss values computed with this function, the latest last.

        Returns
        -------
        orig_loss : Tensor
            One or more loss values from the original part of the loss.
        reg_loss : Tensor
            One or more loss values from the regularisation part of the loss (unweighted).
        """
        if len(self._regularisation_cache) == 0:
            raise ValueError("no regularisation loss yet, make sure to call forward first")
        _totals = torch.tensor(total_loss)
        count = _totals.numel()
        if count > len(self._regularisation_cache):
            raise ValueError(
                f"expected at most {len(self._regularisation_cache)} loss values (the calls "
                f"remembered) but received {count}"
            )
        cached = list(self._regularisation_cache)[-count:]
        reg_loss, weights = torch.tensor(cached).T.reshape(2, *_totals.shape)
        orig_loss = _totals - weights * reg_loss
        return orig_loss, reg_loss

    def forward(self, outputs, y):
        """
        Parameters
        ----------
        outputs : (Tensor, Tensor)
            Tuple consisting of logits and exposed state.
        y : Tensor
            Targets for the original loss part.
        """
        logits, state = outputs
        loss = self.loss_func(logits, y)
        if self.regulariser is not None:
            reg_loss = self.regulariser(state)
            self._regularisation_cache.append((reg_loss.item(), self.weight))
            loss = loss + self.weight * reg_loss
        return loss
