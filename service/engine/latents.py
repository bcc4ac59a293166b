"""Latent codes for /generate, drawn on the CPU from the request's own seed, so that the same
request gives the same images however it is batched and on whichever device it runs."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Protocol

import torch

from ..models import LabelPrior, VariationalAutoEncoder
from .errors import RequestError


class Line(Protocol):
    start: Sequence[float]
    end: Sequence[float]
    steps: int


class GenerateRequest(Protocol):
    """What /generate asks for (the HTTP layer's ``GenerateRequest`` is one)."""

    model: str
    n: int
    seed: int | None
    label: int | None
    labels: Sequence[int] | None
    mean: Sequence[Sequence[float]] | None
    log_var: Sequence[Sequence[float]] | None
    interpolate: Line | None
    temperature: float | None


def _matrix(rows: list[list[float]] | None, name: str, n: int, latent_size: int) -> torch.Tensor:
    if rows is None:
        return torch.zeros(n, latent_size)
    matrix = torch.tensor(rows, dtype=torch.float32) if _rectangular(rows) else None
    if matrix is None or matrix.shape[1] != latent_size:
        sizes = sorted({len(r) for r in rows})
        raise RequestError(
            "invalid_parameters",
            f"{name} vectors have {sizes} values but the model has {latent_size} latent dimensions",
        )
    return matrix.expand(n, latent_size)


def _rectangular(rows: list[list[float]]) -> bool:
    return len({len(r) for r in rows}) == 1


def _labels(body: GenerateRequest, prior: LabelPrior | None, names: list[str] | None):
    """The (n,) class indices a request asks for, or None; 422 for a model without them."""
    if body.label is None and body.labels is None:
        return None
    if prior is None or not names:
        raise RequestError(
            "invalid_parameters",
            f"model {body.model!r} has no labels: it samples from N(0, I) only; "
            "leave out label/labels, or pick a model whose /models entry lists labels",
        )
    labels = torch.tensor(body.labels if body.labels is not None else [body.label] * body.n)
    if int(labels.max()) >= len(names):
        raise RequestError(
            "invalid_parameters",
            f"label {int(labels.max())} is out of range: model {body.model!r} has labels "
            f"0 to {len(names) - 1} ({', '.join(names)})",
        )
    return labels


def latent_codes(
    body: GenerateRequest,
    latent_size: int,
    prior: LabelPrior | None = None,
    names: list[str] | None = None,
) -> tuple[torch.Tensor, int]:
    """
    The (n, latent_size) codes a request asks for, and the seed that drew them.

    Codes from the prior come from ``prior`` (a VAE's fitted prior, whose components are
    called ``names``) when there is one, else from N(0, I); the request's ``temperature``
    scales their noise (by default the prior's own, 1 for N(0, I)).
    """
    seed = body.seed if body.seed is not None else secrets.randbits(63)
    labels = _labels(body, prior, names)
    if body.interpolate is not None:
        line = body.interpolate
        start = _matrix([line.start], "interpolate.start", 1, latent_size)
        end = _matrix([line.end], "interpolate.end", 1, latent_size)
        t = torch.linspace(0, 1, line.steps).unsqueeze(1)  # (steps, 1)
        return start + t * (end - start), seed
    generator = torch.Generator().manual_seed(seed)
    if body.mean is None and body.log_var is None:  # from the prior
        if prior is not None:
            return prior.sample(body.n, generator, labels, body.temperature).contiguous(), seed
        scale = 1.0 if body.temperature is None else body.temperature
        return scale * torch.randn(body.n, latent_size, generator=generator), seed
    mean = _matrix(body.mean, "mean", body.n, latent_size)
    log_var = _matrix(body.log_var, "log_var", body.n, latent_size)
    return VariationalAutoEncoder.sample(mean, log_var, generator).contiguous(), seed
