"""The variational auto-encoder and the conv variant (the assignment's cells: tests/assignment/)."""

import pytest
import torch
from torch import nn

from service.models import ConvVAEConfig, MLPVAEConfig, VariationalAutoEncoder
from service.models.vae import Residual


def test_regularisation_is_summed_over_dims_and_averaged_over_batch():
    mean = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    log_var = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    expected = (0.5 * 1 + 0.5 * (torch.e - 1 - 1)) / 2
    assert VariationalAutoEncoder.regularisation((mean, log_var)).item() == pytest.approx(expected)


@pytest.fixture
def vae():
    # the assignment's fully connected VAE (tests/assignment/test_vae_cells.py)
    return VariationalAutoEncoder(
        encoder=nn.Sequential(nn.Linear(784, 400), nn.ELU(), nn.Linear(400, 20)),
        decoder=nn.Sequential(nn.ELU(), nn.Linear(10, 400), nn.ELU(), nn.Linear(400, 784)),
    )


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


def test_residual_blocks_start_as_the_identity():
    block = Residual(4, "elu")
    x = torch.randn(2, 4, 7, 7)
    assert torch.equal(block(x), x)


def test_res_blocks_and_dropout_keep_the_shapes_and_eval_is_repeatable():
    config = ConvVAEConfig(
        hid_channels=4, code_channels=4, latent_features=6, res_blocks=2, dropout=0.3
    )
    vae = config.build("binomial")
    residuals = [m for m in vae.modules() if isinstance(m, Residual)]
    assert len(residuals) == 8  # two per resolution, in the encoder and in the decoder
    assert any(isinstance(m, nn.Dropout) for m in vae.encoder.modules())
    x = torch.randn(3, 1, 28, 28)
    y, (mean, _) = vae(x)
    assert y.shape == x.shape and mean.shape == (3, 6)
    vae.eval()
    assert torch.equal(vae(x)[0], vae(x)[0])  # no dropout outside training


def test_the_plain_layout_is_unchanged_by_the_new_fields():
    plain = ConvVAEConfig().build("binomial")
    assert not any(isinstance(m, Residual | nn.Dropout) for m in plain.modules())


def _tempered_bernoulli_mean(logits: torch.Tensor, t: float) -> torch.Tensor:
    """The mean of Bernoulli(p = sigmoid(logits)) tempered to p^(1/t) / (p^(1/t) + (1-p)^(1/t)),
    computed from the probabilities, not from the logits the code under test divides."""
    p = torch.sigmoid(logits.double())
    return (p ** (1 / t) / (p ** (1 / t) + (1 - p) ** (1 / t))).float()


def test_pixel_temperature_renders_each_pixel_as_its_tempered_bernoulli_mean():
    config = ConvVAEConfig(
        hid_channels=4, code_channels=4, latent_features=3, pixel_temperature=0.5
    )
    torch.manual_seed(0)
    vae = config.build("binomial").eval()
    z = torch.randn(3, 3)
    with torch.no_grad():
        logits = vae.decoder(z)
    assert vae.pixel_temperature == 0.5
    torch.testing.assert_close(vae.decode(z), torch.sigmoid(logits))  # decode: the mean
    torch.testing.assert_close(
        vae.decode(z, pixel_temperature=0.5), _tempered_bernoulli_mean(logits, 0.5)
    )
    # one temperature per code
    per_code = vae.decode(z, pixel_temperature=torch.tensor([1.0, 0.5, 2.0]))
    for i, t in enumerate((1.0, 0.5, 2.0)):
        torch.testing.assert_close(per_code[i], _tempered_bernoulli_mean(logits[i], t))
    # generate renders at the model's own
    expected = vae.decode(torch.zeros(2, 3), pixel_temperature=0.5)
    torch.testing.assert_close(
        vae.generate(torch.zeros(2, 3), -torch.inf * torch.ones(2, 3)), expected
    )


@pytest.mark.parametrize("assumption", ["gauss", "truncated"])
def test_pixel_temperature_is_for_bernoulli_pixels_only(assumption):
    config = ConvVAEConfig(
        hid_channels=4, code_channels=4, latent_features=3, pixel_temperature=0.5
    )
    with pytest.raises(ValueError, match="pixel_temperature tempers Bernoulli pixels"):
        config.build(assumption)
    config.build("binary")
    ConvVAEConfig(hid_channels=4, code_channels=4, latent_features=3).build(assumption)


@pytest.mark.parametrize("t", [0.0, -1.0, float("nan")])
def test_pixel_temperature_is_positive(t):
    with pytest.raises(ValueError, match="must be positive"):
        MLPVAEConfig(hidden_features=8, latent_features=2, pixel_temperature=t).build("binomial")
