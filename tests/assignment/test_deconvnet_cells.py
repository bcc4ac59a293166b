"""Exercises 1 and 2 of the seed assignment: its test cells for the deconvnet, assertions unchanged
(the messages keep the assignment's points), and companions that the cells alone would let pass."""

import pytest
import torch
from torch import nn
from torchvision import models

from service.models import (
    TORCHVISION_NETWORKS,
    UndoableConv2d,
    UndoableMaxPool2d,
    UndoableSequential,
    load_torchvision_network,
)
from tests.helpers import assert_same_projection, autograd_projection


@pytest.fixture(scope="module")
def alexnet_features():
    torch.manual_seed(1806)
    return models.alexnet().features.eval()


@pytest.fixture(scope="module")
def x_im():
    # stands in for the assignment's kitten: a normalised (1, 3, 224, 224) image
    torch.manual_seed(0)
    return torch.randn(1, 3, 224, 224)


def test_ex1_maxpool_undo_shape():
    x = torch.ones(1, 3, 32, 32)
    pool = nn.MaxPool2d(kernel_size=2)
    wrapped = UndoableMaxPool2d(pool)
    out, context = wrapped(x)
    assert torch.allclose(out, pool(x))
    assert wrapped.undo(out, context).shape == x.shape, (
        "ex1: MaxPool2d.undo produces incorrect shape (-0.5 points)"
    )


def test_ex1_maxpool_undo_pads():
    x = torch.ones(1, 3, 32, 32)
    pool = nn.MaxPool2d(kernel_size=3)
    wrapped = UndoableMaxPool2d(pool)
    out, context = wrapped(x)
    assert torch.allclose(out, pool(x))
    assert wrapped.undo(out, context).shape == x.shape, (
        "ex1: MaxPool2d.undo does not (correctly) pad outputs (-0.5 points)"
    )


def test_ex1_conv_undo_shape():
    x = torch.ones(1, 3, 32, 32)
    conv = nn.Conv2d(3, 16, 7)
    wrapped = UndoableConv2d(conv)
    out, context = wrapped(x)
    assert torch.allclose(out, conv(x)) and context == (32, 32)
    assert wrapped.undo(out, context).shape == x.shape, (
        "ex1: Conv2d.undo produces incorrect shape (-0.5 points)"
    )


def test_ex1_conv_undo_pads_strided():
    x = torch.ones(1, 3, 32, 32)
    conv = nn.Conv2d(3, 16, 7, stride=2)
    wrapped = UndoableConv2d(conv)
    assert wrapped.undo(*wrapped(x)).shape == x.shape, (
        "ex1: Conv2d.undo does not (correctly) pad outputs (-0.5 points)"
    )


def _alexnet_variants():
    yield pytest.param(False, id="random-weights")
    cached = TORCHVISION_NETWORKS["alexnet"].weights_path.is_file()
    yield pytest.param(
        True,
        id="imagenet-weights",
        marks=pytest.mark.skipif(not cached, reason="IMAGENET1K_V1 weights not in the hub cache"),
    )


@pytest.mark.parametrize("pretrained", list(_alexnet_variants()))
def test_ex2_alexnet_cells(pretrained, alexnet_features, x_im):
    net_features = load_torchvision_network("alexnet").features if pretrained else alexnet_features
    seq = UndoableSequential(net_features)
    vis_layer1 = seq.visualise_activations(x_im, layer=1)

    assert vis_layer1.shape == x_im.shape, (
        "ex2: first layer vis does not have correct shape (-0.5 points)"
    )
    assert torch.count_nonzero(vis_layer1.sum(1)) <= 1089, (
        "ex2: too many non-zero values in first layer vis for k=9 (-0.5 points)"
    )

    vis_layer2 = seq.visualise_activations(x_im, layer=4)
    assert vis_layer2.shape == x_im.shape, (
        "ex2: fourth layer vis does not have correct shape (-0.5 points)"
    )
    assert torch.count_nonzero(vis_layer2.sum(1)) <= 24336, (
        "ex2: too many non-zero values in fourth layer vis for k=9 (-0.5 points)"
    )


def test_ex2_alexnet_cells_companion(alexnet_features, x_im):
    # the cells above pass for an all-zero projection; this needs the right one at their layers
    seq = UndoableSequential(alexnet_features)
    for layer, receptive_field in ((1, 11), (4, 51)):
        vis = seq.visualise_activations(x_im, layer=layer)
        expected = autograd_projection(alexnet_features, x_im, layer, 9)
        nonzero = torch.count_nonzero(expected.sum(1)).item()
        assert 0 < nonzero <= 9 * receptive_field**2, layer
        assert_same_projection(vis, expected)
