"""What a forward pass hands to the encoder: the result types of the batch's operations.

The deconvnet's ``Visualisation`` lives with its model in ``service.models``; ``Reconstruction``
is the service's own, here, so that ``inference`` (which makes them) and ``encoding`` (which
turns them into responses) both import it and neither imports the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Reconstruction:
    """One request's reconstructions, and for a VAE the latent Gaussians they decode."""

    images: torch.Tensor  # (n, C, H, W) intensities in [0, 1]
    mean: torch.Tensor | None = None  # (n, latent) for a VAE
    log_var: torch.Tensor | None = None
