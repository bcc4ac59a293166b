"""An independent judge of generated digits: a classifier trained only on the training split.

It is kept apart from the served ``cnn``: its own architecture (three conv blocks, a wider
dense layer), seed and recipe (Adam at a constant rate, larger batches, shifts of up to 2
pixels), trained here and never written to the checkpoint directory, so a VAE is not judged by
a model it shares anything with but the 4,000 training digits.

Scores of a set of images x_1..x_N in [0, 1], with p(y | x) the judge's softmax:

- ``score``: the classifier score exp(E_x[KL(p(y | x) || p(y))]), p(y) = E_x[p(y | x)]: 10 for
  confident, evenly spread digits, 1 for one class or for uniform guesses;
- ``confident``: the share of images whose top probability exceeds 0.9;
- ``histogram``: how many images the judge puts in each class;
- ``agreement`` (given requested labels): the share judged to be the label asked for, per label.

How close a set of generated images is to real ones, in the judge's penultimate-layer features
(``hidden_features``, the 256 activations after the hidden layer's ReLU), against a reference
set of real images:

- ``precision`` and ``recall`` (Kynkäänniemi et al. 2019, "Improved precision and recall metric
  for assessing generative models", k = 3): the share of generated images inside the manifold
  of the real ones (each real feature vector a ball reaching its k-th nearest real neighbour),
  and the share of real images inside the manifold of the generated ones: fidelity and variety;
- ``fid``: the Fréchet distance between Gaussians fitted to the two feature sets (Heusel et al.
  2017), here in the judge's features rather than Inception's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.nn import functional as F
from tqdm import tqdm

from service.models import MNIST_NORMALISATION, CNNConfig, MnistCNN, VariationalAutoEncoder
from training.data import load_mnist_5k, random_shift, to_pixels

JUDGE_CONFIG = CNNConfig(channels=(16, 32, 64), hidden_features=256)
JUDGE_SEED = 2718
CONFIDENT = 0.9
JUDGE_CACHE = Path("bench/results/judge.safetensors")


def train_judge(epochs: int = 12, seed: int = JUDGE_SEED, progress: bool = True) -> MnistCNN:
    """Train the judge on the training split of ``mnist-5k``; returns it in eval mode."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    splits = load_mnist_5k()
    x = MNIST_NORMALISATION.normalise(to_pixels(splits.train_images))
    y = splits.train_labels
    judge = JUDGE_CONFIG.build()
    optimiser = torch.optim.Adam(judge.parameters(), lr=1e-3)
    judge.train()
    for _ in tqdm(range(epochs), desc="judge", unit="epoch", disable=not progress, leave=False):
        for batch in torch.randperm(len(x), generator=generator).split(100):
            inputs = random_shift(x[batch], 2, generator)
            loss = F.cross_entropy(judge(inputs), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return judge.eval()


def load_or_train_judge(cache: Path | None = JUDGE_CACHE, progress: bool = True) -> MnistCNN:
    """The judge from ``cache`` (safetensors weights) when it is there, else trained and cached
    there: every study scores with the same judge, trained once."""
    judge = JUDGE_CONFIG.build()
    if cache is not None and Path(cache).is_file():
        judge.load_state_dict(load_file(cache))
        return judge.eval()
    judge = train_judge(progress=progress)
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in judge.state_dict().items()}, cache)
    return judge


@torch.no_grad()
def probabilities(judge: MnistCNN, images: torch.Tensor) -> torch.Tensor:
    """(N, 1, 28, 28) intensities in [0, 1] -> (N, 10) class probabilities."""
    parts = [judge(MNIST_NORMALISATION.normalise(x)) for x in images.split(500)]
    return torch.cat(parts).softmax(1)


@torch.no_grad()
def hidden_features(judge: MnistCNN, images: torch.Tensor) -> np.ndarray:
    """(N, 1, 28, 28) intensities in [0, 1] -> (N, H) float64 activations of the judge's hidden
    layer (after its ReLU, before the last linear layer), in eval mode."""
    judge.eval()
    penultimate = judge.classifier[:-1]
    parts = [
        penultimate(judge.features(MNIST_NORMALISATION.normalise(x))) for x in images.split(500)
    ]
    return torch.cat(parts).double().numpy()


def _kth_neighbour_radii(points: np.ndarray, k: int) -> np.ndarray:
    """(N,) distance from every row of ``points`` (N, F) to its k-th nearest other row."""
    distances = _distances(points, points)
    return np.sort(distances, axis=1)[:, k]  # column 0 is the point itself


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.clip(squared, 0, None))


def manifold_coverage(points: np.ndarray, manifold: np.ndarray, k: int = 3) -> float:
    """
    The share of ``points`` inside the k-NN manifold of ``manifold`` (Kynkäänniemi et al. 2019).

    Parameters
    ----------
    points : (N, F) array
        Feature vectors to test.
    manifold : (M, F) array, M > k
        Feature vectors whose union of balls, each of radius the distance to its k-th nearest
        neighbour among them, estimates their manifold.
    k : int
        The neighbour that sets each ball's radius.

    Returns
    -------
    float
        The share of ``points`` within (<=) the radius of at least one ball.
    """
    radii = _kth_neighbour_radii(manifold, k)
    inside = (_distances(points, manifold) <= radii[None, :]).any(1)
    return float(inside.mean())


def precision_recall(real: np.ndarray, generated: np.ndarray, k: int = 3) -> tuple[float, float]:
    """
    Improved precision and recall (Kynkäänniemi et al. 2019) of ``generated`` against ``real``.

    Parameters
    ----------
    real, generated : (N, F) and (M, F) arrays
        Feature vectors of real and generated images.
    k : int
        The neighbour that sets the radius of every ball (3, as in the paper).

    Returns
    -------
    (precision, recall) : (float, float)
        The share of generated points inside the real manifold, and of real points inside the
        generated manifold.
    """
    return manifold_coverage(generated, real, k), manifold_coverage(real, generated, k)


def frechet_distance(
    mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray
) -> float:
    """
    The squared Fréchet (2-Wasserstein) distance between N(mean_a, cov_a) and N(mean_b, cov_b):

        ||mean_a - mean_b||^2 + tr(cov_a + cov_b - 2 (cov_a cov_b)^(1/2)).

    tr((cov_a cov_b)^(1/2)) is the sum of the square roots of the eigenvalues of the symmetric
    matrix cov_a^(1/2) cov_b cov_a^(1/2), which has the same eigenvalues as cov_a cov_b.

    Parameters
    ----------
    mean_a, mean_b : (F,) arrays
    cov_a, cov_b : (F, F) symmetric positive semi-definite arrays
    """
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    product = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_root = np.sqrt(np.clip(product, 0, None)).sum()
    difference = mean_a - mean_b
    return float(difference @ difference + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)


def fid(real: np.ndarray, generated: np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted (mean, covariance with N - 1) to two
    feature sets (N, F) and (M, F): FID, in whatever features are given."""
    return frechet_distance(
        real.mean(0), np.cov(real, rowvar=False), generated.mean(0), np.cov(generated, rowvar=False)
    )


def fidelity(judge: MnistCNN, images: torch.Tensor, reference: torch.Tensor) -> dict:
    """
    ``precision``, ``recall`` (k = 3) and ``fid`` of ``images`` against ``reference`` (real
    images), both (N, 1, 28, 28) in [0, 1], in the judge's hidden features; see the module
    docstring. Use sets of equal size: both estimates depend on it.
    """
    real, generated = hidden_features(judge, reference), hidden_features(judge, images)
    precision, recall = precision_recall(real, generated)
    return {"precision": precision, "recall": recall, "fid": fid(real, generated)}


def verdict(judge: MnistCNN, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
    """
    The judge's scores of ``images`` (N, 1, 28, 28) in [0, 1]; see the module docstring.

    Parameters
    ----------
    labels : (N,) int Tensor, optional
        The class each image was asked to be; adds ``agreement`` (a list, one share per class
        asked for, in class order) and ``agreement_min``.
    """
    p = probabilities(judge, images)
    marginal = p.mean(0, keepdim=True)
    kl = (p * (p.clamp_min(1e-12).log() - marginal.log())).sum(1)
    predicted = p.argmax(1)
    result = {
        "score": kl.mean().exp().item(),
        "confident": (p.max(1).values > CONFIDENT).float().mean().item(),
        "histogram": torch.bincount(predicted, minlength=p.shape[1]).tolist(),
    }
    if labels is not None:
        agreement = [
            (predicted[labels == c] == c).float().mean().item() for c in labels.unique().tolist()
        ]
        result |= {"agreement": agreement, "agreement_min": min(agreement)}
    return result


@torch.no_grad()
def prior_samples(
    model: VariationalAutoEncoder,
    n: int = 2000,
    seed: int = 0,
    labels: torch.Tensor | None = None,
    standard_normal: bool = False,
    temperature: float | None = None,
    pixel_temperature: float | None = None,
) -> torch.Tensor:
    """(n, 1, 28, 28) images decoded from ``model``'s prior (its fitted one unless
    ``standard_normal``, at ``temperature`` or the prior's own), drawn from a generator seeded
    with ``seed`` and rendered at ``pixel_temperature`` or the model's own, as /generate
    does."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    features = model.decoder[0].in_features
    if standard_normal or model.prior is None:
        z = torch.randn(n, features, generator=generator)
    else:
        z = model.prior.sample(n, generator, labels, temperature)
    if pixel_temperature is None:
        pixel_temperature = model.pixel_temperature
    return torch.cat(
        [model.decode(part, pixel_temperature=pixel_temperature) for part in z.split(500)]
    )


def real_pairs(per_digit: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """(reference, other) real images in [0, 1]: the held-out digits, and the first
    ``per_digit`` training digits of every class (as many as held out by default), whose
    precision, recall and FID against the held-out ones are the baseline of generated images."""
    splits = load_mnist_5k()
    rows = torch.cat(
        [(splits.train_labels == y).nonzero().squeeze(1)[:per_digit] for y in range(10)]
    )
    return to_pixels(splits.test_images), to_pixels(splits.train_images[rows])


def held_out_verdict(judge: MnistCNN) -> dict:
    """The judge on the 1,000 real held-out digits: the reference for generated ones."""
    splits = load_mnist_5k()
    return verdict(judge, to_pixels(splits.test_images), splits.test_labels) | {
        "accuracy": (
            probabilities(judge, to_pixels(splits.test_images)).argmax(1) == splits.test_labels
        )
        .float()
        .mean()
        .item()
    }
