"""The four attribution methods, each equal to Captum's on the same logits.

Tolerance (``assert_same_projection``): every value within 1e-4 of the expected value, relative,
plus 1e-5 of the expected map's largest magnitude; the two differ only in the order of float32
sums (transposed convolutions here, autograd's kernels in Captum; windows and steps summed in
another order). Occlusion's values are differences of two logits, so a millionth of the largest
logit is allowed on top.
"""

import copy
import warnings

import pytest
import torch
from captum.attr import (
    GuidedGradCam,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    Occlusion,
)
from torch import nn
from torchvision import models

from service.models import (
    PREDICTED,
    IntegratedGradientsPlan,
    MnistCNN,
    OcclusionPlan,
    UndoableClassifier,
    gradcam,
    guided_gradcam,
    integrated_gradients,
    load_torchvision_network,
    occlusion,
)
from tests.helpers import assert_same_projection


def _captum_copy(model: nn.Module) -> nn.Module:
    """The model as Captum needs it: its ReLUs' hooks cannot see through an in-place ReLU."""
    reference = copy.deepcopy(model).eval()
    for module in reference.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return reference


class Case:
    """One network: ours (an UndoableClassifier) and Captum's copy, with inputs that fit it."""

    def __init__(self, reference: nn.Module, ours: UndoableClassifier, size: int, channels: int):
        self.reference, self.ours = _captum_copy(reference), ours
        torch.manual_seed(size)
        self.x = torch.randn(2, channels, size, size)
        self.target = torch.tensor([3, 7])
        self.layer = ours.last_convolution()

    def layer_module(self, layer: int) -> nn.Module:
        return self.reference.features[layer - 1]


@pytest.fixture(scope="module")
def cnn_case():
    torch.manual_seed(21)
    model = MnistCNN().eval()
    return Case(model, UndoableClassifier(model.features, model.classifier).eval(), 28, 1)


def _torchvision_case(tmp_path_factory, name: str, size: int) -> Case:
    torch.manual_seed(22)
    reference = getattr(models, name)().eval()
    path = tmp_path_factory.mktemp(name) / f"{name}.pth"
    torch.save(reference.state_dict(), path)
    ours = load_torchvision_network(name, weights_file=path, classifier=True)
    with torch.no_grad():
        x = torch.randn(2, 3, size, size)
        torch.testing.assert_close(ours(x), reference(x))
    return Case(reference, UndoableClassifier(ours.features, ours.head).eval(), size, 3)


@pytest.fixture(scope="module")
def alexnet_case(tmp_path_factory):
    # 63 px is the least AlexNet takes: its last pooling's map is 1x1
    return _torchvision_case(tmp_path_factory, "alexnet", 63)


@pytest.fixture(scope="module")
def vgg11_case(tmp_path_factory):
    return _torchvision_case(tmp_path_factory, "vgg11", 32)  # the last pooling's map is 1x1


CASES = ["cnn_case", "alexnet_case", "vgg11_case"]


@pytest.fixture(params=CASES)
def case(request) -> Case:
    return request.getfixturevalue(request.param)


def _quiet(attribute, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Setting backward hooks on ReLU", UserWarning)
        return attribute(*args, **kwargs)


def test_gradcam_equals_captum(case):
    for layer in (case.layer, case.layer - 1, 1):  # the ReLU, its convolution, the first
        captum = LayerGradCam(case.reference, case.layer_module(layer))
        cam = captum.attribute(case.x, target=case.target, relu_attributions=True)
        expected = LayerAttribution.interpolate(cam, case.x.shape[2:], interpolate_mode="bilinear")
        logits, ours = gradcam(case.ours, case.x, case.target, layer)
        assert expected.abs().max() > 0
        assert_same_projection(ours, expected)
    torch.testing.assert_close(logits, case.reference(case.x))


def test_gradcam_defaults_to_the_last_convolutions_relu_and_the_predicted_class(
    cnn_case, alexnet_case
):
    assert cnn_case.layer == 5  # conv, relu, pool, conv, relu, pool
    assert alexnet_case.layer == 12  # ..., conv, relu, pool
    default = gradcam(cnn_case.ours, cnn_case.x, cnn_case.target)[1]
    assert torch.equal(default, gradcam(cnn_case.ours, cnn_case.x, cnn_case.target, 5)[1])
    predicted = cnn_case.reference(cnn_case.x).argmax(dim=1)
    unnamed = torch.full_like(predicted, PREDICTED)
    for method in (gradcam, guided_gradcam):
        expected = method(cnn_case.ours, cnn_case.x, predicted)[1]
        assert torch.equal(method(cnn_case.ours, cnn_case.x, unnamed)[1], expected)


def test_guided_gradcam_equals_captum(case):
    captum = GuidedGradCam(case.reference, case.layer_module(case.layer))
    expected = _quiet(captum.attribute, case.x.clone().requires_grad_(), target=case.target)
    _, ours = guided_gradcam(case.ours, case.x, case.target)
    assert expected.abs().max() > 0
    assert_same_projection(ours, expected)


@pytest.mark.parametrize("steps", [1, 7])
def test_integrated_gradients_equal_captum(case, steps):
    expected = IntegratedGradients(case.reference).attribute(
        case.x, target=case.target, n_steps=steps
    )
    ours = integrated_gradients(case.ours, case.x, case.target, steps, batch_size=3)
    assert_same_projection(ours, expected)


# per network: windows that overhang the image, that tile it, and a stride that fits neither
OCCLUSIONS = {
    "cnn_case": [(6, 3), (5, 5), (4, 3)],
    "alexnet_case": [(16, 9)],
    "vgg11_case": [(8, 5)],
}


@pytest.mark.parametrize(
    ("name", "window", "stride"), [(n, *w) for n, ws in OCCLUSIONS.items() for w in ws]
)
def test_occlusion_equals_captum(request, name, window, stride):
    case = request.getfixturevalue(name)
    x, target = case.x[:1], case.target[:1]  # the service occludes one image at a time
    channels = x.shape[1]
    expected = Occlusion(case.reference).attribute(
        x,
        sliding_window_shapes=(channels, window, window),
        strides=(channels, stride, stride),
        target=target,
        perturbations_per_eval=32,
    )
    ours = occlusion(case.ours, x, target, window, stride, batch_size=10)
    assert ours.shape == (1, 1, *x.shape[2:])
    assert expected.abs().max() > 0
    # each value is a difference of two logits rounded to float32 in batches of other sizes
    # here and in Captum: their rounding, a millionth of the largest logit, is allowed too
    logit = case.reference(x).abs().max().item()
    torch.testing.assert_close(
        ours.expand_as(expected),
        expected,
        rtol=1e-4,
        atol=1e-5 * expected.abs().max().item() + 1e-6 * logit,
    )


def test_plans_split_in_any_batches_give_the_same_map(cnn_case):
    image, target = cnn_case.x[:1], cnn_case.target[0]
    plan = IntegratedGradientsPlan.of(image, steps=5)
    assert torch.equal(torch.cat([plan.inputs(0, 2), plan.inputs(2)]), plan.inputs())
    assert plan.weights.sum().item() == pytest.approx(1.0)
    occluded = OcclusionPlan(image, window=10, stride=9)
    assert occluded.grid == (3, 3)  # 0, 9 and 18: the last window overhangs by one pixel
    whole = occluded.inputs()
    assert torch.equal(torch.cat([occluded.inputs(0, 4), occluded.inputs(4)]), whole)
    assert (whole[4, :, 9:19, 9:19] == 0).all()
    assert torch.equal(whole[4, :, :9], image[0, :, :9])
    singly = occlusion(cnn_case.ours, image, target[None], 10, 9, batch_size=1)
    assert_same_projection(singly, occlusion(cnn_case.ours, image, target[None], 10, 9))


def test_occlusion_reduces_the_drop_of_every_covering_window():
    # a hand-made grid of drops: 2x2 windows of a 3x3 image at stride 1
    plan = OcclusionPlan(torch.zeros(1, 1, 3, 3), window=2, stride=1)
    scores = torch.tensor([1.0, 2.0, 3.0, 4.0])  # row-major positions
    attribution = plan.reduce(torch.tensor(10.0), scores)[0, 0]
    drops = 10 - scores
    assert attribution[0, 0] == drops[0]
    assert attribution[0, 1] == (drops[0] + drops[1]) / 2
    assert attribution[1, 1] == drops.mean()
    assert attribution[2, 2] == drops[3]


def test_bad_arguments_are_named(cnn_case):
    net, x = cnn_case.ours, cnn_case.x[:1]
    with pytest.raises(ValueError, match=r"expected target in \[0, 9\] but received 10"):
        gradcam(net, x, torch.tensor([10]))
    with pytest.raises(ValueError, match=r"expected layer in \[1, 6\] but received 7"):
        guided_gradcam(net, x, torch.tensor([1]), layer=7)
    with pytest.raises(ValueError, match="expected steps >= 1 but received 0"):
        integrated_gradients(net, x, torch.tensor([1]), steps=0)
    with pytest.raises(ValueError, match=r"expected window in \[1, 28\] but received 29"):
        occlusion(net, x, torch.tensor([1]), window=29, stride=1)
    with pytest.raises(ValueError, match="expected stride >= 1 but received 0"):
        occlusion(net, x, torch.tensor([1]), window=4, stride=0)
    with pytest.raises(ValueError, match=r"expected target in \[0, 9\] but received -1"):
        occlusion(net, x, torch.tensor([-1]), window=4, stride=2)
