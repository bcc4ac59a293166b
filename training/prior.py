"""Fitting a VAE's labelled prior to the aggregate posterior of its training images."""

from __future__ import annotations

import torch

from service.models import MNIST_NORMALISATION, VariationalAutoEncoder
from service.models.prior import LabelPrior

from .data import load_mnist_5k, to_pixels


@torch.no_grad()
def fit_prior(
    model: VariationalAutoEncoder,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device,
    batch_size: int = 500,
) -> None:
    """
    Fit ``model.prior`` (if it has one) to the posteriors of ``inputs``; see ``LabelPrior``.

    Parameters
    ----------
    model : VariationalAutoEncoder
        Its encoder gives the posteriors; its ``prior`` is refitted in place.
    inputs : (N, C, H, W) Tensor
        Normalised training images.
    labels : (N,) int Tensor
        Their labels, the indices of ``model.prior``'s components.
    """
    if model.prior is None:
        return
    was_training = model.training
    model.eval()
    parts = [model.encode(x.to(device)) for x in inputs.split(batch_size)]
    mean = torch.cat([m for m, _ in parts])
    log_var = torch.cat([v for _, v in parts])
    model.prior.fit(mean, log_var, labels)
    model.train(was_training)


def refit_prior(model: VariationalAutoEncoder, components: int) -> None:
    """
    Replace ``model.prior`` by one with ``components`` Gaussians per label, fitted to the
    training split of ``mnist-5k`` as training fits it (on the CPU); its temperature stays.
    """
    old = model.prior
    model.prior = LabelPrior(old.labels, old.means.shape[1], components, old.temperature)
    splits = load_mnist_5k()
    inputs = MNIST_NORMALISATION.normalise(to_pixels(splits.train_images))
    fit_prior(model, inputs, splits.train_labels, torch.device("cpu"))
