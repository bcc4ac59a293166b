"""The convolutional auto-encoder (the assignment's cells: tests/assignment/)."""

import pytest
import torch
from torch import nn

from service.models import AutoEncoder, ConvAEConfig


def test_architecture_is_conv_pool_conv_and_its_mirror():
    ae = AutoEncoder(1, 8, 4, 3)
    kinds = [type(m) for m in ae.encoder]
    assert kinds.count(nn.Conv2d) >= 2 and nn.AvgPool2d in kinds
    kinds = [type(m) for m in ae.decoder]
    assert kinds.count(nn.ConvTranspose2d) >= 2 and nn.Upsample in kinds


@pytest.mark.parametrize("size", [(28, 28), (27, 31), (13, 9), (5, 7)])
@pytest.mark.parametrize("kernel_size, stride, pooling", [(5, 1, 2), (3, 2, 3), (4, 3, 2)])
def test_any_input_size_gives_the_input_shape(size, kernel_size, stride, pooling):
    ae = AutoEncoder(2, 4, 3, kernel_size, stride, pooling)
    x = torch.randn(3, 2, *size)
    assert ae(x).shape == x.shape


@pytest.mark.parametrize("assumption", ["gauss", "truncated", "binomial", "binary"])
def test_reconstruct_gives_intensities_independent_of_the_batch(assumption):
    torch.manual_seed(0)
    ae = AutoEncoder(1, 8, 4, 3, assumption=assumption).eval()
    x = torch.randn(4, 1, 28, 28)
    together = ae.reconstruct(x)
    assert together.min() >= 0 and together.max() <= 1
    for i in range(4):
        torch.testing.assert_close(ae.reconstruct(x[i : i + 1])[0], together[i])


def test_config_builds_the_same_architecture():
    config = ConvAEConfig(hid_channels=8, code_channels=4, kernel_size=3, activation="relu")
    ae = config.build("truncated")
    assert ae.assumption == "truncated"
    assert ae.encoder[0].out_channels == 8 and isinstance(ae.encoder[1], nn.ReLU)
    with pytest.raises(ValueError, match="expected activation in"):
        ConvAEConfig(activation="swish").build()
