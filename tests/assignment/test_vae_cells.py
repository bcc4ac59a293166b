"""Exercise 5 of the seed assignment: its test cells for the VAE, assertions unchanged, and a
companion that the unseeded cell alone would let pass."""

import pytest
import torch
from torch import nn

from service.models import VariationalAutoEncoder


def test_ex5_sample_shape_and_mean():
    mean, log_var = torch.ones(1024, 10), torch.zeros(1024, 10)
    z = VariationalAutoEncoder.sample(mean, log_var)
    assert z.shape == mean.shape, "ex5: incorrect shape for sampled VAE latents (-1 point)"
    assert torch.allclose(z.mean(0), torch.ones(1), atol=1e-1), (
        "ex5: incorrect mean for sampled VAE latents: "
        f"'{z.mean(0).abs().max().item():.3f}' (-1 point)"
    )


def test_ex5_sample_companion_is_the_reparameterisation_with_the_right_variance():
    # the cell above is unseeded and checks only the mean, to 0.1
    mean = torch.full((4096, 3), 1.5)
    std = torch.tensor([0.5, 1.0, 2.0])
    log_var = (2 * std.log()).expand(4096, 3)
    z = VariationalAutoEncoder.sample(mean, log_var, torch.Generator().manual_seed(0))
    eps = torch.randn(4096, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(z, mean + std * eps)
    torch.manual_seed(0)
    z = VariationalAutoEncoder.sample(mean, log_var)  # the global generator, as in training
    torch.testing.assert_close(z.mean(0), torch.full((3,), 1.5), rtol=0, atol=0.1)
    torch.testing.assert_close(z.var(0), std**2, rtol=0.1, atol=0)


def test_ex5_sample_is_differentiable():
    mean = torch.zeros(1024, 10).requires_grad_(True)
    log_var = torch.zeros(1024, 10).requires_grad_(True)
    z = VariationalAutoEncoder.sample(mean, log_var)
    assert z.requires_grad, "ex5: reparameterisation trick not (correctly) implemented (-2 points)"


def test_ex5_regularisation():
    mean, log_var = torch.zeros(1, 10), torch.zeros(1, 10)
    reg = VariationalAutoEncoder.regularisation((mean, log_var))
    assert torch.allclose(reg, torch.zeros(1)), (
        "ex5: VAE regulariser for perfect parameters is not zero (-1 point)"
    )

    reg = VariationalAutoEncoder.regularisation((mean + 1, log_var))
    assert torch.allclose(reg, 5 * torch.ones(1)), (
        "ex5: VAE regulariser for parameters with shifted mean is wrong: "
        f"'{reg.item():.3f}' != 5.0 (-1 point)"
    )


@pytest.fixture
def vae():
    return VariationalAutoEncoder(
        encoder=nn.Sequential(nn.Linear(784, 400), nn.ELU(), nn.Linear(400, 20)),
        decoder=nn.Sequential(nn.ELU(), nn.Linear(10, 400), nn.ELU(), nn.Linear(400, 784)),
    )


def test_ex5_forward_shapes(vae):
    x = torch.ones(1, 784)
    y, pars = vae(x)
    assert y.shape == x.shape, (
        f"ex5: reconstructed input has different shape: {tuple(y.shape)} (-0.5 points)"
    )
    assert pars[0].shape == pars[1].shape, (
        "ex5: latent distribution parameters have different shapes (-0.5 points)"
    )


def test_ex5_forward_is_stochastic(vae):
    x = torch.ones(1, 784)
    y1, _ = vae(x)
    y2, _ = vae(x)
    assert not torch.allclose(y1, y2), "ex5: forward pass seems to be deterministic (-0.5 points)"
