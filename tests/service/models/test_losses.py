"""Assumptions, their losses and target pre-processing, and RegularisedLoss."""

import pytest
import torch
from torch.nn import functional as F

from service.models import (
    MNIST_NORMALISATION,
    ReconstructionLoss,
    RegularisedLoss,
    VariationalAutoEncoder,
    target_transform,
    to_intensities,
)


def test_losses_are_summed_per_image_and_averaged_over_the_batch():
    torch.manual_seed(0)
    logits, pixels = torch.randn(4, 1, 5, 5), torch.rand(4, 1, 5, 5)
    mse = ReconstructionLoss("truncated")(logits, pixels)
    assert mse.item() == pytest.approx(F.mse_loss(logits, pixels, reduction="sum").item() / 4)
    bce = ReconstructionLoss("binomial")(logits, pixels)
    expected = F.binary_cross_entropy_with_logits(logits, pixels, reduction="sum") / 4
    assert bce.item() == pytest.approx(expected.item())


def test_targets_follow_the_assumption():
    pixels = torch.tensor([[[[0.0, 0.4, 0.6, 1.0]]]])
    assert torch.equal(
        target_transform("binary", MNIST_NORMALISATION)(pixels),
        torch.tensor([[[[0.0, 0.0, 1.0, 1.0]]]]),
    )
    assert torch.equal(target_transform("binomial", MNIST_NORMALISATION)(pixels), pixels)
    gauss = target_transform("gauss", MNIST_NORMALISATION)(pixels)
    torch.testing.assert_close(gauss, (pixels - 0.1307) / 0.3081)


def test_intensities_follow_the_assumption():
    logits = torch.tensor([[[[-2.0, 0.0, 0.5, 3.0]]]])
    assert torch.equal(to_intensities(logits, "binary"), torch.tensor([[[[0.0, 0.0, 1.0, 1.0]]]]))
    assert torch.equal(
        to_intensities(logits, "truncated"), torch.tensor([[[[0.0, 0.0, 0.5, 1.0]]]])
    )
    torch.testing.assert_close(to_intensities(logits, "binomial"), torch.sigmoid(logits))
    gauss = to_intensities(logits, "gauss", (torch.tensor(-1.0), torch.tensor(2.0)))
    torch.testing.assert_close(gauss, torch.tensor([[[[0.0, 1 / 3, 0.5, 1.0]]]]))
    assert to_intensities(logits, None) is logits


def test_unknown_assumption_is_rejected():
    with pytest.raises(ValueError, match="expected assumption in"):
        ReconstructionLoss("poisson")
    with pytest.raises(ValueError, match="but received 'poisson'"):
        to_intensities(torch.zeros(1, 1), "poisson")


def test_regularised_loss_adds_weighted_kl_and_splits_it_back():
    mean, log_var = torch.ones(2, 3), torch.zeros(2, 3)
    logits, pixels = torch.zeros(2, 1, 2, 2), torch.full((2, 1, 2, 2), 0.5)
    loss = RegularisedLoss(
        ReconstructionLoss("binomial"), VariationalAutoEncoder.regularisation, weight=0.5
    )
    with pytest.raises(ValueError, match="call forward first"):
        loss.split_loss([1.0])
    total = loss((logits, (mean, log_var)), pixels)
    rec = 4 * torch.log(torch.tensor(2.0))
    assert total.item() == pytest.approx(rec.item() + 0.5 * 1.5)
    orig, reg = loss.split_loss([total.item()])
    assert orig.item() == pytest.approx(rec.item()) and reg.item() == pytest.approx(1.5)


def _kl_loss(weight: float, **kw) -> RegularisedLoss:
    return RegularisedLoss(
        ReconstructionLoss("binomial"), VariationalAutoEncoder.regularisation, weight, **kw
    )


def test_split_loss_uses_the_weight_each_total_was_made_with():
    # a KL warm-up changes the weight between steps: 0.5, then 1.0
    loss = _kl_loss(0.5)
    logits, pixels = torch.zeros(1, 1, 1, 1), torch.full((1, 1, 1, 1), 0.5)
    rec = torch.log(torch.tensor(2.0)).item()  # BCE of logit 0 against 0.5, any target
    first = loss((logits, (torch.ones(1, 2), torch.zeros(1, 2))), pixels).item()  # KL 1
    loss.weight = 1.0
    second = loss((logits, (2 * torch.ones(1, 2), torch.zeros(1, 2))), pixels).item()  # KL 4
    assert [first, second] == pytest.approx([rec + 0.5 * 1.0, rec + 1.0 * 4.0])
    orig, reg = loss.split_loss([first, second])
    torch.testing.assert_close(reg, torch.tensor([1.0, 4.0]))
    torch.testing.assert_close(orig, torch.tensor([rec, rec]))


def test_the_cache_keeps_only_the_latest_calls():
    loss = _kl_loss(1.0, max_cached=3)
    logits, pixels = torch.zeros(1, 1, 1, 1), torch.full((1, 1, 1, 1), 0.5)
    totals = [
        loss((logits, (torch.full((1, 1), float(m)), torch.zeros(1, 1))), pixels).item()
        for m in range(5)
    ]
    assert len(loss._regularisation_cache) == 3
    _, reg = loss.split_loss(totals[-3:])
    torch.testing.assert_close(reg, torch.tensor([2.0, 4.5, 8.0]))  # m^2 / 2 for m = 2, 3, 4
    with pytest.raises(ValueError, match="expected at most 3 loss values"):
        loss.split_loss(totals)
