"""The variational auto-encoder: the assignment's cells (exercise 5) and the conv variant."""

import pytest
import torch
from torch import nn

from service.models import ConvVAEConfig, MLPVAEConfig, VariationalAutoEncoder


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


def test_regularisation_is_summed_over_dims_and_averaged_over_batch():
    mean = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    log_var = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    expected = (0.5 * 1 + 0.5 * (torch.e - 1 - 1)) / 2
    assert VariationalAutoEncoder.regularisation((mean, log_var)).item() == pytest.approx(expected)


def test_eval_forward_decodes_the_mean(vae):
    vae.eval()
    x = torch.randn(2, 784)
    y1, (mean, _) = vae(x)
    y2, _ = vae(x)
    assert torch.equal(y1, y2)
    assert torch.equal(y1, vae.decoder(mean))


def test_generate_is_reproducible_with_a_generator():
    vae = MLPVAEConfig(hidden_features=32, latent_features=4).build("binomial").eval()
    mean = torch.zeros(5, 4)
    a = vae.generate(mean, generator=torch.Generator().manual_seed(3))
    b = vae.generate(mean, generator=torch.Generator().manual_seed(3))
    c = vae.generate(mean, generator=torch.Generator().manual_seed(4))
    assert a.shape == (5, 1, 28, 28) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1


@pytest.mark.parametrize(
    "config",
    [
        MLPVAEConfig(hidden_features=32, latent_features=6),
        ConvVAEConfig(hid_channels=8, code_channels=8, latent_features=6),
        ConvVAEConfig(
            hid_channels=4,
            code_channels=4,
            kernel_size=5,
            stride=1,
            pooling=2,
            latent_features=6,
            image_size=(27, 30),
        ),
    ],
    ids=["mlp", "conv", "conv-odd-size"],
)
def test_configs_build_vaes_of_the_image_shape(config):
    vae = config.build("binomial")
    x = torch.randn(3, 1, *config.image_size)
    y, (mean, log_var) = vae(x)
    assert y.shape == x.shape and mean.shape == log_var.shape == (3, 6)
    assert vae.generate(torch.zeros(2, 6)).shape == (2, 1, *config.image_size)
    assert vae.reconstruct(x).shape == x.shape


def test_conv_vae_reuses_the_auto_encoder_parts():
    vae = ConvVAEConfig().build("binomial")
    assert any(isinstance(m, nn.AvgPool2d) for m in vae.encoder.modules())
    assert any(isinstance(m, nn.ConvTranspose2d) for m in vae.decoder.modules())
