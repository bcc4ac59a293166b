"""POST /attribute through the real app, against Captum on the served weights."""

import asyncio
import base64
import copy
import io
import warnings

import numpy as np
import pytest
import torch
from captum.attr import (
    GuidedGradCam,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    Occlusion,
)
from PIL import Image
from torch import nn
from torchvision import models

from service.engine.imaging import ImageSpec, decode_input
from service.models import (
    IMAGENET_NORMALISATION,
    TORCHVISION_NETWORKS,
    load_checkpoint,
)
from tests.helpers import assert_same_projection, png_bytes


def _reference(model: nn.Module) -> nn.Module:
    """Captum's copy: its ReLU hooks cannot see through an in-place ReLU."""
    reference = copy.deepcopy(model).eval()
    for module in reference.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return reference


@pytest.fixture(scope="module")
def cnn(checkpoint_dir):
    checkpoint = load_checkpoint(checkpoint_dir / "cnn.json", torch.device("cpu"))
    spec = ImageSpec(1, 28, checkpoint.normalisation)
    return _reference(checkpoint.model), spec


def _input(image: bytes, spec: ImageSpec) -> torch.Tensor:
    return decode_input(image, "image/png", spec, 10**8)


def _captum(reference, method, x, target, **p):
    """What the service should answer, by Captum, as docs/methods.md states the settings."""
    layer = reference.features[p.get("layer", 5) - 1]  # the default: the last conv's ReLU
    x = x.clone().requires_grad_()
    if method == "gradcam":
        cam = LayerGradCam(reference, layer).attribute(x, target=target, relu_attributions=True)
        return LayerAttribution.interpolate(cam, x.shape[2:], interpolate_mode="bilinear")
    if method == "guided_gradcam":
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Setting backward hooks on ReLU", UserWarning)
            return GuidedGradCam(reference, layer).attribute(x, target=target)
    if method == "integrated_gradients":
        return IntegratedGradients(reference).attribute(x, target=target, n_steps=p["steps"])
    c, w, s = x.shape[1], p["window"], p["stride"]
    occlusion = Occlusion(reference)
    return occlusion.attribute(
        x.detach(), sliding_window_shapes=(c, w, w), strides=(c, s, s), target=target
    )[:, :1]


CNN_CASES = [
    ("gradcam", {}),
    ("gradcam", {"layer": 2}),
    ("guided_gradcam", {}),
    ("integrated_gradients", {"steps": 10}),
    ("occlusion", {"window": 4, "stride": 2}),  # the cnn's defaults, given
    ("occlusion", {"window": 7, "stride": 5}),
]


@pytest.mark.parametrize(("method", "params"), CNN_CASES)
async def test_npy_equals_captum_on_the_served_cnn(make_client, cnn, method, params):
    client, _ = await make_client()
    reference, spec = cnn
    image = png_bytes((28, 28), "L", seed=5)
    x = _input(image, spec)
    target = 3
    fields = {"network": "cnn", "method": method, "target": str(target), "format": "npy"}
    fields |= {k: str(v) for k, v in params.items()}
    r = await client.post("/attribute", files={"file": ("d.png", image)}, data=fields)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-npy"
    ours = torch.from_numpy(np.load(io.BytesIO(r.content)))
    expected = _captum(reference, method, x, target, **params)[0]
    assert ours.shape == expected.shape
    assert expected.abs().max() > 0
    assert_same_projection(ours, expected)


async def test_json_names_the_predicted_class_and_the_top_five(make_client, cnn):
    client, _ = await make_client()
    reference, spec = cnn
    image = png_bytes((28, 28), "L", seed=6)
    with torch.no_grad():
        logits = reference(_input(image, spec))[0].double()
    probabilities = torch.softmax(logits, dim=0)
    r = await client.post(
        "/attribute",
        files={"file": ("d.png", image)},
        data={"network": "cnn", "method": "occlusion", "format": "json"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    predicted = int(logits.argmax())
    assert body["target"] == body["predicted"] == predicted  # the default target
    assert [c["index"] for c in body["top"]] == probabilities.topk(5).indices.tolist()
    for ranked in body["top"]:
        assert ranked["probability"] == pytest.approx(probabilities[ranked["index"]].item())
        assert ranked["logit"] == pytest.approx(logits[ranked["index"]].item(), abs=1e-5)
    assert (body["window"], body["stride"], body["layer"], body["steps"]) == (4, 2, None, None)
    assert body["attribution_shape"] == [1, 28, 28] and body["input_shape"] == [1, 28, 28]
    drawn = Image.open(io.BytesIO(base64.b64decode(body["image_png"])))
    assert drawn.size == (28, 28) and drawn.mode == "RGB"


async def test_png_tints_where_the_map_points(make_client):
    client, _ = await make_client()
    image = png_bytes((28, 28), "L", seed=7)
    data = {"network": "cnn", "method": "gradcam", "target": "1"}
    r = await client.post("/attribute", files={"file": ("d.png", image)}, data=data)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    drawn = np.asarray(Image.open(io.BytesIO(r.content)), dtype=float)
    npy = await client.post(
        "/attribute", files={"file": ("d.png", image)}, data=data | {"format": "npy"}
    )
    cam = np.load(io.BytesIO(npy.content))[0]
    # Grad-CAM is non-negative: the strongest pixel is the reddest, a zero one is grey
    strongest, zero = np.unravel_index(cam.argmax(), cam.shape), cam == 0
    redness = drawn[..., 0] - drawn[..., 2]
    assert redness[strongest] == redness.max() > 100
    if zero.any():
        assert np.abs(redness[zero]).max() <= 1


async def test_models_lists_the_defaults(make_client):
    client, _ = await make_client()
    listed = {m["name"]: m for m in (await client.get("/models")).json()["models"]}
    assert "attribute" in listed["cnn"]["endpoints"]
    assert listed["cnn"]["attribution"] == {
        "layer": 5,
        "layers": 6,
        "classes": 10,
        "steps": 50,
        "window": 4,
        "stride": 2,
        "min_stride": 1,
    }
    assert listed["ae"]["attribution"] is None


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({"target": "10"}, "target 10 is out of range: cnn has classes 0 to 9"),
        ({"layer": "7"}, "layer 7 is out of range: cnn has layers 1 to 6"),
        ({"window": "29"}, "window 29 is out of range"),
        ({"steps": "0"}, "steps"),
        ({"steps": "257"}, "steps"),
        ({"stride": "0"}, "stride"),
        ({"method": "lrp"}, "method"),
        ({"target": "-1"}, "target"),
    ],
)
async def test_bad_parameters_are_named(make_client, fields, detail):
    client, _ = await make_client()
    files = {"file": ("d.png", png_bytes((28, 28), "L"))}
    r = await client.post("/attribute", files=files, data={"network": "cnn", **fields})
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid_parameters"
    assert detail in r.json()["detail"]


async def test_only_classifiers_attribute(make_client):
    client, _ = await make_client()
    files = {"file": ("d.png", png_bytes((28, 28), "L"))}
    r = await client.post("/attribute", files=files, data={"network": "ae"})
    assert r.status_code == 422 and "/attribute accepts ['cnn']" in r.json()["detail"]


async def test_alexnets_too_short_a_stride_is_refused(make_client):
    client, _ = await make_client(networks=["alexnet"])
    files = {"file": ("x.png", png_bytes((224, 224), "RGB"))}
    data = {"method": "occlusion", "window": "4", "stride": "7"}
    r = await client.post("/attribute", files=files, data=data)
    assert r.status_code == 422
    assert "at least 8, so that there are at most 1024 occlusions" in r.json()["detail"]


async def test_several_requests_passes_share_batches(make_client):
    client, app = await make_client(max_delay_ms=300, max_batch_size=16, concurrent_batches=2)
    batcher = app.state.engine.batchers["cnn"]
    batches, predict = [], batcher.predict

    def recording(key, jobs):
        if key == ("gradients",):
            batches.append(({id(job.plan) for job in jobs}, sum(j.stop - j.start for j in jobs)))
        return predict(key, jobs)

    batcher.predict = recording

    async def ask(seed):
        data = {"network": "cnn", "method": "integrated_gradients", "steps": "8"}
        data |= {"format": "npy", "target": "2"}
        files = {"file": ("d.png", png_bytes((28, 28), "L", seed=seed))}
        r = await client.post("/attribute", files=files, data=data)
        assert r.status_code == 200, r.text
        return np.load(io.BytesIO(r.content))

    together = await asyncio.gather(*(ask(seed) for seed in range(3)))
    assert sum(items for _, items in batches) == 3 * 8  # a chunk of 8 each
    assert all(items <= 16 for _, items in batches)
    assert any(len(plans) > 1 for plans, _ in batches), batches  # two requests' passes at once
    for seed, answer in enumerate(together):
        np.testing.assert_allclose(answer, await ask(seed), rtol=1e-4, atol=1e-6)


async def test_requests_with_more_passes_than_the_queue_holds_are_answered(make_client):
    # 4 requests of 30 passes each, 120 in all, through a queue of 64 passes: each keeps one
    # chunk of 8 passes waiting at a time
    client, _ = await make_client(max_queue=64, max_batch_size=16, concurrent_batches=2)

    async def ask(seed):
        data = {"network": "cnn", "method": "integrated_gradients", "steps": "30"}
        files = {"file": ("d.png", png_bytes((28, 28), "L", seed=seed))}
        return await client.post("/attribute", files=files, data=data | {"format": "npy"})

    answers = await asyncio.gather(*(ask(seed) for seed in range(4)))
    assert [r.status_code for r in answers] == [200] * 4, answers[0].text


async def test_alexnet_occlusion_and_integrated_gradients_equal_captum(make_client, torch_home):
    client, _ = await make_client(networks=["alexnet"])
    reference = models.alexnet()
    state = torch.load(TORCHVISION_NETWORKS["alexnet"].weights_path, weights_only=True)
    reference.load_state_dict(state)
    reference = _reference(reference)
    spec = ImageSpec(3, 224, IMAGENET_NORMALISATION, 256)
    image = png_bytes((224, 224), "RGB", seed=8)
    x = _input(image, spec)
    for method, params in (
        ("occlusion", {"window": 112, "stride": 100}),
        ("integrated_gradients", {"steps": 3}),
    ):
        fields = {"method": method, "target": "7", "format": "npy"}
        fields |= {k: str(v) for k, v in params.items()}
        r = await client.post("/attribute", files={"file": ("x.png", image)}, data=fields)
        assert r.status_code == 200, r.text
        ours = torch.from_numpy(np.load(io.BytesIO(r.content)))
        expected = _captum(reference, method, x, 7, **params)[0]
        logit = reference(x).abs().max().item()
        torch.testing.assert_close(
            ours, expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item() + 1e-6 * logit
        )
