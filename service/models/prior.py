"""A prior fitted to a VAE's aggregate posterior: one full-covariance Gaussian per label.

A VAE trained against N(0, I) does not fill that prior: its posterior means occupy a shrunken,
clustered part of the latent space, so codes drawn from N(0, I) often land between digits and
decode to blends. After training, this prior is fitted to the aggregate posterior of the
training images, label by label (ex-post density estimation, Ghosh et al. 2020, "From
variational to deterministic autoencoders"):

    p(z) = sum_y p(y) N(z; mu_y, Sigma_y),
    mu_y = mean of the posterior means of label y,
    Sigma_y = covariance of those means + mean posterior variance (diagonal).

``Sigma_y`` is the covariance of the mixture sum_i q(z | x_i) over the images of label y, so
codes drawn from it are the codes the decoder met in training. Drawing from one component gives
images of that label. The tensors are buffers of the model and so live in its safetensors file;
the config's ``labels`` say that a prior is there and what its components are called.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# keeps every Sigma_y positive definite when a label has fewer images than latent dimensions
JITTER = 1e-4


class LabelPrior(nn.Module):
    """
    A mixture of one multivariate Gaussian per label over the latent space.

    Parameters
    ----------
    labels : int
        Number of labels (mixture components), K.
    features : int
        Latent dimensions, D.

    Buffers (filled by ``fit``; a new prior is K copies of N(0, I) with equal weights):
    ``weights`` (K,) the label frequencies p(y); ``means`` (K, D); ``scale_tril`` (K, D, D)
    the Cholesky factors of the covariances.
    """

    def __init__(self, labels: int, features: int):
        super().__init__()
        self.register_buffer("weights", torch.full((labels,), 1.0 / labels))
        self.register_buffer("means", torch.zeros(labels, features))
        self.register_buffer("scale_tril", torch.eye(features).repeat(labels, 1, 1))

    @property
    def labels(self) -> int:
        return len(self.weights)

    @torch.no_grad()
    def fit(self, mean: torch.Tensor, log_var: torch.Tensor, labels: torch.Tensor) -> None:
        """
        Fit every component to the posteriors of the images with its label.

        Parameters
        ----------
        mean, log_var : (N, D) Tensor
            Posterior parameters of the training images.
        labels : (N,) int Tensor
            Their labels, in 0 .. K - 1; every label must occur at least twice.
        """
        mean, var = mean.double(), log_var.double().exp()
        labels = labels.to(mean.device)
        eye = torch.eye(mean.shape[1], dtype=mean.dtype, device=mean.device)
        for y in range(self.labels):
            rows = labels == y
            count = int(rows.sum())
            if count < 2:
                raise ValueError(f"expected at least 2 images of label {y} but found {count}")
            m = mean[rows]
            cov = torch.cov(m.T, correction=0) + torch.diag(var[rows].mean(0)) + JITTER * eye
            self.means[y] = m.mean(0).to(self.means.dtype)
            self.scale_tril[y] = torch.linalg.cholesky(cov).to(self.scale_tril.dtype)
            self.weights[y] = count / len(labels)

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Draw ``n`` latent codes (n, D), on the generator's device.

        Parameters
        ----------
        n : int
            Number of codes.
        generator : torch.Generator, optional
            Source of randomness: the same generator state gives the same codes.
        labels : (n,) int Tensor, optional
            The label of every code; without them labels are drawn from p(y) first.
        """
        device = generator.device if generator is not None else self.means.device
        weights, means, tril = (t.to(device) for t in (self.weights, self.means, self.scale_tril))
        if labels is None:
            labels = torch.multinomial(weights, n, replacement=True, generator=generator)
        labels = torch.as_tensor(labels, device=device).long()
        eps = torch.randn(n, means.shape[1], generator=generator, device=device)
        return means[labels] + (tril[labels] @ eps.unsqueeze(-1)).squeeze(-1)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) of codes (N, D) under the mixture; returns (N,)."""
        diff = z.unsqueeze(1) - self.means  # (N, K, D)
        tril = self.scale_tril.expand(len(z), -1, -1, -1)
        white = torch.linalg.solve_triangular(tril, diff.unsqueeze(-1), upper=False).squeeze(-1)
        log_det = self.scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # (K,)
        features = z.shape[1]
        component = -0.5 * white.pow(2).sum(-1) - log_det - 0.5 * features * math.log(2 * math.pi)
        return torch.logsumexp(component + self.weights.log(), dim=1)


def gaussian_log_prob(z: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """log N(z; mean, diag(exp(log_var))) of (N, D) codes, summed over dimensions: (N,)."""
    squared = (z - mean).pow(2) / log_var.exp()
    return -0.5 * (squared + log_var + math.log(2 * math.pi)).sum(1)
