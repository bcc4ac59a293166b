"""A prior fitted to a VAE's aggregate posterior: one full-covariance Gaussian per label.

A VAE trained against N(0, I) does not fill that prior: its posterior means occupy a shrunken,
clustered part of the latent space, so codes drawn from N(0, I) often land between digits and
decode to blends. After training, this prior is fitted to the aggregate posterior of the
training images, label by label (ex-post density estimation, Ghosh et al. 2020, "From
variational to deterministic autoencoders"), with C clusters of every label's images:

    p(z) = sum_{y, c} p(y, c) N(z; mu_yc, Sigma_yc),
    mu_yc = mean of the posterior means of the images in cluster c of label y,
    Sigma_yc = covariance of those means + their mean posterior variance (diagonal).

``Sigma_yc`` is the covariance of the mixture sum_i q(z | x_i) over the images of the cluster,
so codes drawn from it are the codes the decoder met in training. Drawing from the components
of one label gives images of that label. With as many components as a label has images, every
image is a cluster of its own and the prior is the aggregate posterior itself, sum_i q(z | x_i)
(a kernel density estimate; the optimal prior of the ELBO, Hoffman & Johnson 2016): its samples
are as varied as the training images, not the clusters' averages.

Codes among other labels' codes are left out of the fit: an image whose ``NEIGHBOURS`` nearest
posterior means (of all labels) hold fewer than ``OWN_SHARE`` of its own label (a 4 the encoder
puts among the 9s) would give samples of that label that decode to another digit.

The tensors are buffers of the model and so live in its safetensors file; the config's
``labels`` say that a prior is there and name the labels.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

# keeps every Sigma_yc positive definite when a label has fewer images than latent dimensions
JITTER = 1e-4
# an image is fitted when at least half of its nearest posterior means have its label
NEIGHBOURS, OWN_SHARE = 10, 0.5


class LabelPrior(nn.Module):
    """
    A mixture of multivariate Gaussians over the latent space, ``components`` per label.

    Parameters
    ----------
    labels : int
        Number of labels, K.
    features : int
        Latent dimensions, D.
    components : int
        Gaussians per label, C: the images of a label are split into C clusters (k-means on
        their posterior means), each fitted as above, because one Gaussian per label also
        covers the gaps between a label's styles, where codes decode to other digits.
    temperature : float
        ``sample`` scales the noise by it (every covariance by its square): below 1 samples stay
        nearer the typical codes of their cluster, which gives sharper, more recognisable and
        less varied images (the temperature of Glow and NVAE). ``log_prob``, and so the
        likelihood bound the project reports, is that of the fitted prior, at temperature 1;
        docs/training.md has the measurements behind the default.

    Buffers (filled by ``fit``; a new prior is K * C copies of N(0, I) with equal weights):
    ``weights`` (K * C,) p(y) times the share of the label's images in each cluster; ``means``
    (K * C, D); ``scale_tril`` (K * C, D, D) the Cholesky factors of the covariances;
    ``component_labels`` (K * C,) the label of every component.
    """

    def __init__(self, labels: int, features: int, components: int = 1, temperature: float = 1.0):
        super().__init__()
        total = labels * components
        self.components, self.temperature = components, temperature
        self.register_buffer("weights", torch.full((total,), 1.0 / total))
        self.register_buffer("means", torch.zeros(total, features))
        self.register_buffer("scale_tril", torch.eye(features).repeat(total, 1, 1))
        self.register_buffer("component_labels", torch.arange(labels).repeat_interleave(components))

    @property
    def labels(self) -> int:
        return len(self.weights) // self.components

    @torch.no_grad()
    def fit(self, mean: torch.Tensor, log_var: torch.Tensor, labels: torch.Tensor) -> None:
        """
        Fit every label's components to the posteriors of the images with that label.

        Parameters
        ----------
        mean, log_var : (N, D) Tensor
            Posterior parameters of the training images.
        labels : (N,) int Tensor
            Their labels, in 0 .. K - 1; every label must occur at least twice.
        """
        mean, var = mean.double().cpu(), log_var.double().exp().cpu()
        labels = labels.cpu()
        generator = torch.Generator().manual_seed(0)  # k-means starts: the same fit every time
        among_own = among_own_label(mean, labels)
        for y in range(self.labels):
            rows = labels == y
            count = int(rows.sum())
            if count < 2:
                raise ValueError(f"expected at least 2 images of label {y} but found {count}")
            if int((rows & among_own).sum()) >= 2:  # else the label has no typical codes: all
                rows &= among_own
            clusters = _kmeans(mean[rows], self.components, generator)
            for c in range(self.components):
                members = clusters == c
                # p(y) (of every image) times the cluster's share of the label's fitted ones
                share = count / len(labels) * float(members.sum()) / len(clusters)
                if not members.any():  # an empty cluster: never sampled
                    members = torch.ones_like(members)
                self._set(y * self.components + c, mean[rows][members], var[rows][members], share)

    def _set(self, k: int, means: torch.Tensor, variances: torch.Tensor, weight: float) -> None:
        eye = torch.eye(means.shape[1], dtype=means.dtype)
        cov = torch.cov(means.T, correction=0) + torch.diag(variances.mean(0)) + JITTER * eye
        tril = torch.linalg.cholesky(cov)
        self.means[k] = means.mean(0).to(self.means)
        self.scale_tril[k] = tril.to(self.scale_tril)
        self.weights[k] = weight

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        labels: torch.Tensor | None = None,
        temperature: float | None = None,
    ) -> torch.Tensor:
        """
        Draw ``n`` latent codes (n, D) at ``temperature``, on the generator's device.

        The generator gives the (n, D) standard normal noise first, then the components, so
        the same seed gives the same noise whatever the labels.

        Parameters
        ----------
        n : int
            Number of codes.
        generator : torch.Generator, optional
            Source of randomness: the same generator state gives the same codes.
        labels : (n,) int Tensor, optional
            The label of every code; without them components are drawn by ``weights``.
        temperature : float, optional
            Scale of the noise around the component means, instead of ``self.temperature``.
        """
        device = generator.device if generator is not None else self.means.device
        eps = torch.randn(n, self.means.shape[1], generator=generator, device=device)
        u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
        # The rest in numpy on the CPU: a few dozen small ops, each cheaper in numpy than in
        # torch, on the event loop of a /generate request. The components are drawn by inverse
        # CDF (cheaper than torch.multinomial over many components): a uniform in each code's
        # share of the cumulative weights, [all labels before its own, up to its own last],
        # looked up there. A label's components are contiguous; one of weight 0 is never found
        # (``side="right"``).
        weights, means, tril = (_host(t) for t in (self.weights, self.means, self.scale_tril))
        cdf = np.concatenate(([0.0], np.cumsum(weights, dtype=np.float64)))
        if labels is None:
            low, high = cdf[0], cdf[-1]
        else:
            first = np.asarray(torch.as_tensor(labels).cpu(), dtype=np.int64) * self.components
            low, high = cdf[first], cdf[first + self.components]
        component = np.searchsorted(cdf[1:], low + _host(u) * (high - low), side="right")
        if labels is not None:  # a rounding error may not reach the next label
            component = np.minimum(component, first + self.components - 1)
        noise = np.matmul(tril[component], _host(eps)[:, :, None])[:, :, 0]
        scale = self.temperature if temperature is None else temperature
        return torch.from_numpy(means[component] + np.float32(scale) * noise).to(device)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) of codes (N, D) under the mixture; returns (N,)."""
        # L_k^-1 (z - mu_k) as one matrix product of the codes with every inverse factor, not a
        # triangular solve per code and component: the held-out evaluation of every epoch pays it
        eye = torch.eye(z.shape[1], dtype=z.dtype, device=z.device).expand_as(self.scale_tril)
        inverse = torch.linalg.solve_triangular(self.scale_tril, eye, upper=False)  # (K * C, D, D)
        shift = torch.einsum("kij,kj->ki", inverse, self.means)
        log_det = self.scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # (K * C,)
        constant = -log_det - 0.5 * z.shape[1] * math.log(2 * math.pi) + self.weights.log()
        parts = []  # components in chunks: (N, chunk, D) stays small with thousands of them
        for i in range(0, len(inverse), 256):
            block = inverse[i : i + 256]
            white = (z @ block.flatten(0, 1).T).unflatten(1, block.shape[:2]) - shift[i : i + 256]
            parts.append(-0.5 * white.pow(2).sum(-1) + constant[i : i + 256])
        return torch.logsumexp(torch.cat(parts, dim=1), dim=1)


def among_own_label(
    mean: torch.Tensor, labels: torch.Tensor, neighbours: int = NEIGHBOURS, chunk: int = 1024
) -> torch.Tensor:
    """(N,) bool: whether at least ``OWN_SHARE`` of each of the (N, D) codes' ``neighbours``
    nearest other codes (Euclidean) have its label; rows in chunks, so that N need not be
    small."""
    k = min(neighbours, len(mean) - 1)
    if k < 1:
        return torch.ones(len(mean), dtype=torch.bool)
    own = []
    for start in range(0, len(mean), chunk):
        distances = torch.cdist(mean[start : start + chunk], mean)
        rows = torch.arange(start, start + len(distances))
        distances[rows - start, rows] = torch.inf  # not its own neighbour
        nearest = distances.topk(k, largest=False).indices
        own.append((labels[nearest] == labels[rows, None]).double().mean(1))
    return torch.cat(own) >= OWN_SHARE


def _kmeans(x: torch.Tensor, clusters: int, generator: torch.Generator, steps: int = 30):
    """Cluster index (N,) of every row of x (N, D): Lloyd's algorithm from random rows. With
    ``clusters`` >= N every row is a cluster of its own."""
    if clusters == 1:
        return torch.zeros(len(x), dtype=torch.long)
    if clusters >= len(x):
        return torch.arange(len(x))
    centres = x[torch.randperm(len(x), generator=generator)[:clusters]]
    assigned = torch.cdist(x, centres).argmin(1)
    for _ in range(steps):
        members = torch.nn.functional.one_hot(assigned, clusters).to(x.dtype)  # (N, C)
        counts = members.sum(0).unsqueeze(1)
        # an empty cluster keeps its centre
        centres = torch.where(counts > 0, members.T @ x / counts.clamp_min(1), centres)
        previous, assigned = assigned, torch.cdist(x, centres).argmin(1)
        if torch.equal(previous, assigned):
            break
    return assigned


def gaussian_log_prob(z: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """log N(z; mean, diag(exp(log_var))) of (N, D) codes, summed over dimensions: (N,)."""
    squared = (z - mean).pow(2) / log_var.exp()
    return -0.5 * (squared + log_var + math.log(2 * math.pi)).sum(1)


def _host(t: torch.Tensor) -> np.ndarray:
    """``t`` as a numpy array on the CPU (shared memory where it is there already)."""
    return t.detach().cpu().numpy()
