"""Receptive fields from a stack's geometry equal the input pixels that autograd finds one
activation depends on, when every weight is one and max-pooling is read as average pooling
(so that no pixel of the field drops out); clipped at the image's edges, where a dilated
field's box may hold holes beyond the last pixel it sees."""

import pytest
import torch
from torch import nn

from service.models import CNNConfig
from service.models.receptive import receptive_field, receptive_size
from service.models.torchvision_nets import alexnet_features


def _dense(stack: nn.Sequential) -> nn.Sequential:
    """The same geometry with every pixel of a field reaching the output."""
    layers = []
    for m in stack:
        if isinstance(m, nn.Conv2d):
            conv = nn.Conv2d(
                m.in_channels,
                m.out_channels,
                m.kernel_size,
                m.stride,
                m.padding,
                m.dilation,
                bias=False,
            )
            nn.init.ones_(conv.weight)
            layers.append(conv)
        elif isinstance(m, nn.MaxPool2d):
            layers.append(nn.AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode))
        else:
            layers.append(nn.Identity())
    return nn.Sequential(*layers).double()


def _support(stack, layer, y, x, size) -> tuple[int, int, int, int]:
    """Bounding box of the input pixels that activation (0, y, x) of ``layer`` depends on."""
    image = torch.ones(1, stack[0].in_channels, *size, dtype=torch.float64, requires_grad=True)
    stack[:layer](image)[0, 0, y, x].backward()
    rows, cols = image.grad[0].abs().sum(0).nonzero(as_tuple=True)
    return rows.min().item(), cols.min().item(), rows.max().item() + 1, cols.max().item() + 1


STACKS = {
    "cnn": (CNNConfig().build().features, (28, 28)),
    "alexnet": (alexnet_features(), (224, 224)),
    "dilated": (
        nn.Sequential(nn.Conv2d(1, 2, 3, 2, 1, dilation=2), nn.ReLU(), nn.MaxPool2d(3, 2, 1)),
        (20, 17),
    ),
    "dilated-interior": (nn.Sequential(nn.Conv2d(1, 2, 3, 1, 2, dilation=2)), (9, 9)),
}


@pytest.mark.parametrize("name", STACKS)
def test_receptive_fields_are_what_autograd_sees(name):
    stack, size = STACKS[name]
    dense = _dense(stack)
    for layer in range(1, len(stack) + 1):
        with torch.no_grad():
            _n, _c, h, w = dense[:layer](torch.zeros(1, stack[0].in_channels, *size).double()).shape
        positions = {(0, 0), (h - 1, w - 1), (h // 2, w // 3), (0, w - 1)}
        for y, x in positions:
            box = receptive_field(stack, layer, torch.tensor([y]), torch.tensor([x]), size)
            top, left, bottom, right = box[0].tolist()
            support = _support(dense, layer, y, x, size)
            if name == "dilated":  # the field's holes may lie at its clipped edges
                s_top, s_left, s_bottom, s_right = support
                assert top <= s_top and left <= s_left and s_bottom <= bottom and s_right <= right
            else:
                assert (top, left, bottom, right) == support, (layer, y, x)
            window = receptive_size(stack, layer, size)
            assert bottom - top <= window[0] and right - left <= window[1]


def test_the_full_field_of_alexnet_layers():
    # the sizes from the stack's arithmetic, as in Zeiler & Fergus's discussion of AlexNet
    sizes = [receptive_size(alexnet_features(), n, (1000, 1000))[0] for n in (1, 3, 4, 6, 13)]
    assert sizes == [11, 19, 51, 67, 195]
