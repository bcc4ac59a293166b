"""The labelled prior fitted to a VAE's aggregate posterior."""

import numpy as np
import pytest
import torch
from torch import distributions as D

from service.models import (
    MNIST_NORMALISATION,
    ConvVAEConfig,
    LabelPrior,
    load_checkpoint,
    save_checkpoint,
)
from service.models.prior import JITTER, among_own_label


@pytest.fixture
def posteriors():
    generator = torch.Generator().manual_seed(0)
    labels = torch.tensor([0] * 30 + [1] * 50 + [2] * 20)
    mean = torch.randn(100, 3, generator=generator) + 4 * labels.unsqueeze(1)
    log_var = torch.randn(100, 3, generator=generator) * 0.3 - 1
    return mean, log_var, labels


def test_fit_is_the_moments_of_each_labels_posteriors(posteriors):
    mean, log_var, labels = posteriors
    prior = LabelPrior(3, 3)
    prior.fit(mean, log_var, labels)
    m, v, y = mean.numpy(), np.exp(log_var.numpy()), labels.numpy()
    np.testing.assert_allclose(prior.weights.numpy(), [0.3, 0.5, 0.2], rtol=1e-6)
    for k in range(3):
        expected = np.cov(m[y == k].T, bias=True) + np.diag(v[y == k].mean(0))
        covariance = (prior.scale_tril[k] @ prior.scale_tril[k].T).numpy()
        np.testing.assert_allclose(prior.means[k].numpy(), m[y == k].mean(0), rtol=1e-5)
        np.testing.assert_allclose(covariance, expected + JITTER * np.eye(3), rtol=1e-4)


def test_log_prob_is_the_mixture_density(posteriors):
    mean, log_var, labels = posteriors
    prior = LabelPrior(3, 3)
    prior.fit(mean, log_var, labels)
    mixture = D.MixtureSameFamily(
        D.Categorical(probs=prior.weights),
        D.MultivariateNormal(prior.means, scale_tril=prior.scale_tril),
    )
    z = torch.randn(7, 3) * 5
    torch.testing.assert_close(prior.log_prob(z), mixture.log_prob(z))


def test_samples_follow_the_asked_component(posteriors):
    mean, log_var, labels = posteriors
    prior = LabelPrior(3, 3)
    prior.fit(mean, log_var, labels)
    generator = torch.Generator().manual_seed(1)
    z = prior.sample(4, generator, torch.tensor([2, 0, 2, 1]))
    eps = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    for i, k in enumerate([2, 0, 2, 1]):
        torch.testing.assert_close(z[i], prior.means[k] + prior.scale_tril[k] @ eps[i])
    prior.temperature = 0.5
    cold = prior.sample(4, torch.Generator().manual_seed(1), torch.tensor([2, 0, 2, 1]))
    torch.testing.assert_close(
        cold - prior.means[[2, 0, 2, 1]], 0.5 * (z - prior.means[[2, 0, 2, 1]])
    )
    prior.temperature = 1.0
    many = prior.sample(20000, torch.Generator().manual_seed(2))
    nearest = torch.cdist(many, prior.means).argmin(1)
    shares = torch.bincount(nearest, minlength=3) / len(many)
    torch.testing.assert_close(shares, prior.weights, atol=0.02, rtol=0)


def test_a_label_seen_once_cannot_be_fitted(posteriors):
    mean, log_var, _ = posteriors
    with pytest.raises(ValueError, match="at least 2 images of label 2 but found 1"):
        LabelPrior(3, 3).fit(mean[:5], log_var[:5], torch.tensor([0, 0, 1, 1, 2]))


def test_checkpoint_keeps_the_prior_and_its_labels(tmp_path, posteriors):
    config = ConvVAEConfig(
        hid_channels=4, code_channels=4, latent_features=3, labels=("a", "b", "c")
    )
    model = config.build("binomial")
    model.prior.fit(*posteriors)
    save_checkpoint(tmp_path / "vae", model, config, MNIST_NORMALISATION, "binomial")
    loaded = load_checkpoint(tmp_path / "vae")
    assert loaded.config.labels == ("a", "b", "c")
    for name in ("weights", "means", "scale_tril"):
        torch.testing.assert_close(getattr(loaded.model.prior, name), getattr(model.prior, name))
    plain = ConvVAEConfig(hid_channels=4, code_channels=4, latent_features=3)
    save_checkpoint(
        tmp_path / "plain", plain.build("binomial"), plain, MNIST_NORMALISATION, "binomial"
    )
    assert load_checkpoint(tmp_path / "plain").model.prior is None


def test_components_split_a_label_into_its_clusters():
    # label 0 has two tight groups far apart; each of its two components fits one of them
    generator = torch.Generator().manual_seed(5)
    centres = torch.tensor([[-10.0, 0.0], [10.0, 5.0], [0.0, 30.0]])  # 2 groups of label 0
    owner = torch.tensor([0] * 40 + [1] * 20 + [2] * 30)  # which centre; labels 0, 0, 1
    mean = centres[owner] + 0.1 * torch.randn(90, 2, generator=generator)
    labels = torch.tensor([0] * 60 + [1] * 30)
    prior = LabelPrior(2, 2, components=2)
    prior.fit(mean, torch.full((90, 2), -4.0), labels)
    first = sorted(prior.means[:2].tolist())
    expected = sorted([mean[owner == 0].mean(0).tolist(), mean[owner == 1].mean(0).tolist()])
    np.testing.assert_allclose(first, expected, rtol=1e-5)
    assert sorted(prior.weights[:2].tolist()) == pytest.approx([20 / 90, 40 / 90])
    assert prior.component_labels.tolist() == [0, 0, 1, 1]
    for k, centre in enumerate(prior.means[:2]):
        group = mean[owner == int(centre[0] > 0)].double().numpy()
        expected_cov = np.cov(group.T, bias=True) + (np.exp(-4.0) + JITTER) * np.eye(2)
        covariance = (prior.scale_tril[k] @ prior.scale_tril[k].T).numpy()
        np.testing.assert_allclose(covariance, expected_cov, rtol=1e-4)


def test_a_label_draws_its_own_components_by_their_weights():
    # 3 labels x 4 components, far apart and tight, so each sample shows its component
    prior = LabelPrior(3, 2, components=4)
    prior.means.copy_(100 * torch.randn(12, 2, generator=torch.Generator().manual_seed(0)))
    prior.scale_tril.mul_(1e-3)
    weights = torch.tensor([0.1, 0.0, 0.2, 0.05, 0.3, 0.0, 0.0, 0.1, 0.05, 0.05, 0.1, 0.05])
    prior.weights.copy_(weights)
    for label in range(3):
        labels = torch.full((20000,), label)
        z = prior.sample(20000, torch.Generator().manual_seed(label), labels)
        counts = torch.bincount(torch.cdist(z, prior.means).argmin(1), minlength=12)
        own = weights[4 * label : 4 * label + 4]
        assert counts.sum() == counts[4 * label : 4 * label + 4].sum()  # no other label's
        assert (counts[4 * label : 4 * label + 4][own == 0] == 0).all()  # none of weight 0
        shares = counts[4 * label : 4 * label + 4] / 20000
        torch.testing.assert_close(shares, own / own.sum(), atol=0.015, rtol=0)


def test_among_own_label_is_the_majority_of_the_ten_nearest_codes():
    generator = torch.Generator().manual_seed(2)
    labels = torch.randint(3, (300,), generator=generator)
    mean = torch.randn(300, 4, generator=generator).double() + 1.5 * labels.unsqueeze(1)
    m, y = mean.numpy(), labels.numpy()
    distances = ((m[:, None] - m[None]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    nearest = np.argsort(distances, axis=1)[:, :10]
    expected = (y[nearest] == y[:, None]).sum(1) >= 5
    assert 0 < (~expected).sum() < 150  # the labels overlap: some codes are left out
    np.testing.assert_array_equal(among_own_label(mean, labels, chunk=64).numpy(), expected)


def test_a_component_per_image_is_the_aggregate_posterior_without_the_strays():
    # labels 0 and 1 far apart, and one image of label 0 (the last) among the 1s
    generator = torch.Generator().manual_seed(4)
    mean = torch.cat(
        [torch.randn(12, 2, generator=generator), 20 + torch.randn(13, 2, generator=generator)]
    )
    labels = torch.tensor([0] * 12 + [1] * 12 + [0])
    log_var = torch.randn(25, 2, generator=generator) * 0.2 - 2
    prior = LabelPrior(2, 2, components=15)
    prior.fit(mean, log_var, labels)
    for y, rows in ((0, slice(0, 12)), (1, slice(12, 24))):
        own = slice(15 * y, 15 * y + 15)
        fitted = prior.weights[own] > 0
        assert int(fitted.sum()) == 12  # one component per image, the stray left out
        # each the image's own posterior: its mean and variance (and the jitter)
        order = torch.argsort(prior.means[own][fitted][:, 0])
        expected = torch.argsort(mean[rows][:, 0])
        torch.testing.assert_close(prior.means[own][fitted][order], mean[rows][expected])
        covariance = prior.scale_tril[own][fitted] @ prior.scale_tril[own][fitted].transpose(1, 2)
        variances = torch.diag_embed(log_var[rows].exp() + JITTER)[expected]
        torch.testing.assert_close(covariance[order], variances, rtol=1e-4, atol=1e-6)
        # p(y) counts every image of the label, the stray too
        share = (13 if y == 0 else 12) / 25
        torch.testing.assert_close(prior.weights[own].sum(), torch.tensor(share), rtol=1e-5, atol=0)
