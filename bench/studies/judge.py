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
"""

from __future__ import annotations

from pathlib import Path

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
) -> torch.Tensor:
    """(n, 1, 28, 28) images decoded from ``model``'s prior (its fitted one unless
    ``standard_normal``), drawn from a generator seeded with ``seed``, as /generate does."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    features = model.decoder[0].in_features
    if standard_normal or model.prior is None:
        z = torch.randn(n, features, generator=generator)
    else:
        z = model.prior.sample(n, generator, labels)
    return torch.cat([model.decode(part) for part in z.split(500)])


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
