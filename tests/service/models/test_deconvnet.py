"""The deconvnet visualiser against autograd and Captum (assignment cells: tests/assignment)."""

import copy
import itertools
import warnings
from functools import partial

import pytest
import torch
from captum.attr import Deconvolution, GuidedBackprop, Saliency
from torch import nn
from torch.nn import functional as F
from torchvision import models

from service.models import (
    DEFAULT_METHOD,
    METHODS,
    MnistCNN,
    UndoableMaxPool2d,
    UndoableSequential,
    keep_top_k,
)
from tests.helpers import assert_same_projection, autograd_projection


@pytest.fixture(scope="module")
def alexnet_features():
    torch.manual_seed(1806)
    return models.alexnet().features.eval()


def test_keep_top_k_keeps_k_highest_per_sample():
    t = torch.tensor([[[1.0, 5.0], [3.0, -2.0]], [[0.0, 0.5], [9.0, 4.0]]])
    kept = keep_top_k(t, k=2)
    assert torch.equal(kept[0], torch.tensor([[0.0, 5.0], [3.0, 0.0]]))
    assert torch.equal(kept[1], torch.tensor([[0.0, 0.0], [9.0, 4.0]]))


# -- correctness: equal to the autograd formulation at every layer -------------------------------


def test_alexnet_equals_autograd_at_every_layer(alexnet_features):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 224, 224)
    seq = UndoableSequential(alexnet_features)
    for layer in range(1, len(alexnet_features) + 1):
        vis = seq.visualise(x, layer, k=9)
        assert_same_projection(vis.projection, autograd_projection(alexnet_features, x, layer, 9))


def test_vgg11_equals_autograd_at_every_layer():
    torch.manual_seed(2)
    features = models.vgg11().features.eval()
    x = torch.randn(2, 3, 64, 64)
    seq = UndoableSequential(features)
    for layer in range(1, len(features) + 1):
        vis = seq.visualise(x, layer, k=5)
        assert_same_projection(vis.projection, autograd_projection(features, x, layer, 5))


def test_channel_mode_equals_autograd(alexnet_features):
    torch.manual_seed(3)
    x = torch.randn(2, 3, 224, 224)
    seq = UndoableSequential(alexnet_features)
    vis = seq.visualise(x, layer=5, k=4, channel=17)
    assert (vis.channel == 17).all()
    assert_same_projection(
        vis.projection, autograd_projection(alexnet_features, x, 5, 4, channel=17)
    )


@pytest.mark.parametrize(
    "features",
    [
        nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1, dilation=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1, dilation=2, ceil_mode=True),
            nn.Conv2d(8, 8, 3, groups=2, padding=2),
            nn.ReLU(),
            nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
            nn.Conv2d(8, 4, 2, stride=3),
        ),
        nn.Sequential(nn.Conv2d(3, 6, 5), nn.AvgPool2d(2), nn.ReLU(), nn.MaxPool2d(2, 1)),
    ],
    ids=["every-option", "avgpool"],
)
def test_layer_options_equal_autograd(features):
    torch.manual_seed(4)
    x = torch.randn(3, 3, 37, 41)
    seq = UndoableSequential(features.eval())
    for layer in range(1, len(features) + 1):
        vis = seq.visualise(x, layer, k=3)
        assert vis.projection.shape == x.shape
        assert_same_projection(vis.projection, autograd_projection(features, x, layer, 3))


def test_batch_is_top_k_per_sample(alexnet_features):
    torch.manual_seed(5)
    x = torch.randn(3, 3, 224, 224)
    seq = UndoableSequential(alexnet_features)
    batched = seq.visualise(x, layer=8, k=6)
    for i in range(3):
        alone = seq.visualise(x[i : i + 1], layer=8, k=6)
        assert torch.equal(alone.channel[0], batched.channel[i])
        assert_same_projection(batched.projection[i], alone.projection[0])


def test_kept_activations_are_reported(alexnet_features):
    torch.manual_seed(6)
    x = torch.randn(2, 3, 224, 224)
    seq = UndoableSequential(alexnet_features)
    vis = seq.visualise(x, layer=6, k=7)
    acts = alexnet_features[:6](x)
    assert vis.activation_shape == tuple(acts.shape[1:])
    for i in range(2):
        at = acts[i, vis.channel[i], vis.y[i], vis.x[i]]
        assert torch.equal(at, vis.value[i])
        assert torch.equal(vis.value[i], acts[i].flatten().topk(7).values)


def test_repeated_runs_are_bit_identical_and_threads_change_only_rounding(alexnet_features):
    torch.manual_seed(7)
    x = torch.randn(2, 3, 224, 224)
    seq = UndoableSequential(alexnet_features)
    first = seq.visualise(x, layer=12, k=9).projection
    assert torch.equal(first, seq.visualise(x, layer=12, k=9).projection)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = seq.visualise(x, layer=12, k=9).projection
    finally:
        torch.set_num_threads(threads)
    assert_same_projection(single, first)


def test_shared_switches_add_up():
    # two overlapping windows both pick the middle value: they share one switch
    x = torch.tensor([[[[0.0, 5.0, 0.0]]]])
    pool = nn.MaxPool2d((1, 2), stride=1)
    y = torch.tensor([[[[1.0, 2.0]]]])
    summed = UndoableMaxPool2d(pool)
    _, context = summed(x)
    assert torch.equal(summed.undo(y, context), torch.tensor([[[[0.0, 3.0, 0.0]]]]))


def test_unsupported_layers_are_named():
    with pytest.raises(TypeError, match=r"layer 2 \(BatchNorm2d"):
        UndoableSequential(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))
    with pytest.raises(TypeError, match="padding_mode='zeros'"):
        UndoableSequential(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")))


def test_invalid_layer_k_and_channel_are_rejected(alexnet_features):
    seq = UndoableSequential(alexnet_features)
    x = torch.randn(1, 3, 224, 224)
    with pytest.raises(ValueError, match="no layer '14' in a 13-layer network"):
        seq.visualise(x, layer=14)
    with pytest.raises(ValueError, match=r"expected k in \[1, "):
        seq.visualise(x, layer=1, k=0)
    with pytest.raises(ValueError, match=r"expected channel in \[0, 63\]"):
        seq.visualise(x, layer=1, channel=64)


def test_visualise_matches_functional_maxpool_for_non_overlapping_pools():
    # without shared switches, the transpose and max_unpool2d agree
    torch.manual_seed(9)
    x = torch.randn(2, 4, 16, 16)
    pool = UndoableMaxPool2d(nn.MaxPool2d(2))
    out, (indices, size) = pool(x)
    expected = F.max_unpool2d(out, indices, 2, output_size=size)
    assert torch.equal(pool.undo(out, (indices, size)), expected)


def test_channels_last_inputs_give_the_same_projection(alexnet_features):
    torch.manual_seed(10)
    x = torch.randn(2, 3, 224, 224)
    seq = UndoableSequential(alexnet_features)
    expected = seq.visualise(x, layer=4, k=9).projection
    assert expected.abs().max() > 0
    channels_last = seq.visualise(x.to(memory_format=torch.channels_last), layer=4, k=9)
    assert_same_projection(channels_last.projection, expected)
    kept = keep_top_k(alexnet_features[:1](x).to(memory_format=torch.channels_last), k=3)
    assert torch.count_nonzero(kept) == 6


# -- the three methods: each equal to Captum's at every layer ------------------------------------

CAPTUM_METHODS = {
    "deconvnet": lambda model: Deconvolution(model).attribute,
    "guided_backprop": lambda model: GuidedBackprop(model).attribute,
    # Simonyan et al. take the magnitude; the service answers the signed gradient
    "saliency": lambda model: partial(Saliency(model).attribute, abs=False),
}


class _KeptActivations(nn.Module):
    """(N, ...) -> (N,): the layer's output weighted by the kept activations, so that its
    gradient with respect to the layer's output is the kept activations' values."""

    def __init__(self, features: nn.Sequential, kept: torch.Tensor):
        super().__init__()
        self.features, self.kept = features, kept

    def forward(self, x):
        return (self.features(x) * self.kept).flatten(1).sum(1)


def captum_projection(features: nn.Sequential, x, layer, k, method, channel=None):
    """Captum's attribution of the top-k activations of ``layer`` (1-based) to ``x``."""
    # Captum's ReLU hooks cannot see through an in-place ReLU; the function is the same
    stack = copy.deepcopy(features[:layer])
    for module in stack:
        if isinstance(module, nn.ReLU):
            module.inplace = False
    with torch.no_grad():
        acts = stack(x)
    scores = acts.clone()
    if channel is not None:
        scores = torch.full_like(acts, -torch.inf)
        scores[:, channel] = acts[:, channel]
    _, idx = scores.flatten(1).topk(k, dim=1)
    kept = torch.zeros_like(acts).flatten(1).scatter(1, idx, acts.flatten(1).gather(1, idx))
    attribute = CAPTUM_METHODS[method](_KeptActivations(stack, kept.view_as(acts)))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Setting backward hooks on ReLU", UserWarning)
        return attribute(x.clone().requires_grad_())


def test_every_method_has_a_captum_judge():
    assert set(METHODS) == set(CAPTUM_METHODS)
    assert METHODS[0] == DEFAULT_METHOD == "deconvnet"


@pytest.mark.parametrize("method", list(CAPTUM_METHODS))
def test_alexnet_methods_equal_captum_at_every_layer(method, alexnet_features):
    torch.manual_seed(11)
    x = torch.randn(2, 3, 128, 128)  # every layer still has a 3x3 map or more
    seq = UndoableSequential(alexnet_features)
    for layer in range(1, len(alexnet_features) + 1):
        vis = seq.visualise(x, layer, k=9, method=method)
        expected = captum_projection(alexnet_features, x, layer, 9, method)
        assert expected.abs().max() > 0, layer
        assert_same_projection(vis.projection, expected)


@pytest.mark.parametrize("method", list(CAPTUM_METHODS))
def test_vgg11_methods_equal_captum_at_every_layer(method):
    torch.manual_seed(12)
    features = models.vgg11().features.eval()
    x = torch.randn(2, 3, 32, 32)  # the last pool's map is 1x1
    seq = UndoableSequential(features)
    for layer in range(1, len(features) + 1):
        vis = seq.visualise(x, layer, k=5, method=method)
        assert_same_projection(vis.projection, captum_projection(features, x, layer, 5, method))


@pytest.mark.parametrize("method", list(CAPTUM_METHODS))
def test_cnn_methods_equal_captum_at_every_layer_and_channel(method):
    torch.manual_seed(13)
    features = MnistCNN().features.eval()
    x = torch.randn(3, 1, 28, 28)
    seq = UndoableSequential(features)
    for layer in range(1, len(features) + 1):
        for channel in (None, 5):
            vis = seq.visualise(x, layer, k=4, channel=channel, method=method)
            expected = captum_projection(features, x, layer, 4, method, channel=channel)
            assert_same_projection(vis.projection, expected)


def test_the_methods_differ_only_where_their_relu_rules_do(alexnet_features):
    torch.manual_seed(14)
    x = torch.randn(1, 3, 224, 224)
    seq = UndoableSequential(alexnet_features)
    projections = {m: seq.visualise(x, 6, k=9, method=m).projection for m in METHODS}
    # below the first ReLU (layer 1 is a conv) there is no rule to differ by
    at_first = {m: seq.visualise(x, 1, k=9, method=m).projection for m in METHODS}
    assert all(torch.equal(p, at_first["deconvnet"]) for p in at_first.values())
    for a, b in itertools.combinations(METHODS, 2):
        assert not torch.allclose(projections[a], projections[b]), (a, b)
    # Captum's own saliency (the magnitude) is the magnitude of the signed gradient
    kept = captum_projection(alexnet_features, x, 6, 9, "saliency")
    saliency = Saliency(lambda inp: _magnitude_target(alexnet_features, x, inp))
    magnitude = saliency.attribute(x.clone().requires_grad_())
    assert_same_projection(magnitude, kept.abs())


def _magnitude_target(features, x, inp):
    stack = features[:6]
    with torch.no_grad():
        acts = stack(x)
    _, idx = acts.flatten(1).topk(9, dim=1)
    kept = torch.zeros_like(acts).flatten(1).scatter(1, idx, acts.flatten(1).gather(1, idx))
    return (stack(inp) * kept.view_as(acts)).flatten(1).sum(1)


def test_an_unknown_method_is_named():
    seq = UndoableSequential(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()))
    with pytest.raises(ValueError, match=r"expected method in \('deconvnet', "):
        seq.visualise(torch.randn(1, 1, 8, 8), 2, k=1, method="lrp")


@pytest.mark.parametrize("channel", [None, 0])
def test_k_1_keeps_the_first_of_tied_maxima(channel):
    # topk leaves ties in any order; the atlas and /visualise agree on the first position
    conv = nn.Conv2d(1, 1, 1, bias=False)
    nn.init.ones_(conv.weight)
    deconv = UndoableSequential(nn.Sequential(conv))
    x = torch.zeros(3, 1, 5, 10)
    flat = x.view(3, 50)
    flat[:, 7] = flat[:, 30] = flat[1, 2] = 1.0
    seen = deconv.visualise(x, 1, k=1, channel=channel)
    first = [min(i for i in range(50) if flat[n, i] == 1) for n in range(3)]
    assert (seen.y.flatten() * 10 + seen.x.flatten()).tolist() == first
