"""The ImageNet feature stacks built without torchvision are torchvision's, and load its files."""

import subprocess
import sys

import pytest
import torch
from torchvision import models

from service.models import TORCHVISION_NETWORKS, WeightsUnavailable, load_torchvision_network

# torchvision's own builders and weight enums: the independent reference
REFERENCE = {
    "alexnet": (models.alexnet, models.AlexNet_Weights.IMAGENET1K_V1),
    "vgg11": (models.vgg11, models.VGG11_Weights.IMAGENET1K_V1),
    "vgg16": (models.vgg16, models.VGG16_Weights.IMAGENET1K_V1),
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_features_match_torchvision_layer_for_layer(name):
    builder, weights = REFERENCE[name]
    torch.manual_seed(0)
    reference = builder().features.eval()
    ours = TORCHVISION_NETWORKS[name].build_features().eval()
    assert [repr(m) for m in ours] == [repr(m) for m in reference]
    ours.load_state_dict(reference.state_dict())  # same names and shapes, strictly
    x = torch.randn(1, 3, 64, 64) if name != "alexnet" else torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(ours(x), reference(x))
    assert TORCHVISION_NETWORKS[name].url == weights.url


def test_a_torchvision_weights_file_loads_its_features_only(tmp_path):
    torch.manual_seed(1)
    full = models.alexnet()
    path = tmp_path / "alexnet.pth"
    torch.save(full.state_dict(), path)
    loaded = load_torchvision_network("alexnet", weights_file=path)
    assert set(loaded.state_dict()) == {f"features.{k}" for k in full.features.state_dict()}
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(loaded.features(x), full.features.eval()(x))


def test_a_file_of_another_network_is_refused_with_its_reason(tmp_path):
    path = tmp_path / "vgg11.pth"
    torch.save(models.vgg11().state_dict(), path)
    with pytest.raises(WeightsUnavailable, match="does not hold alexnet's weights"):
        load_torchvision_network("alexnet", weights_file=path)
    torch.save(torch.zeros(3), path)
    with pytest.raises(WeightsUnavailable, match="holds a Tensor, not a state dict"):
        load_torchvision_network("alexnet", weights_file=path)


def test_the_service_starts_without_importing_torchvision():
    # importing torchvision's model zoo took 4.5 s of a 10 s import of the app on two cores
    code = (
        "import sys, service.api; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torchvision'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
