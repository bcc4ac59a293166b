"""POST /visualise through the real app."""

import asyncio
import base64
import io
from contextlib import contextmanager
from typing import get_args

import numpy as np
import pytest
import torch
from PIL import Image

from service.api.schemas import VisualiseMethod
from service.engine.imaging import ImageSpec, decode_input
from service.models import (
    IMAGENET_NORMALISATION,
    METHODS,
    UndoableSequential,
    load_checkpoint,
    load_torchvision_network,
)
from tests.helpers import assert_same_projection, autograd_projection, png_bytes, spy


@pytest.fixture
async def client(make_client):
    client, _ = await make_client(networks=["alexnet", "vgg16"])
    return client


@contextmanager
def one_thread():
    """Compute on one thread: the thread count changes the order of float sums, and the service
    runs a one-image forward pass on one thread (``ThreadShare``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _form(**fields):
    return {k: str(v) for k, v in fields.items()}


async def test_png_is_a_viewable_projection(client):
    image = png_bytes((300, 240), "RGB")
    r = await client.post(
        "/visualise", files={"file": ("cat.png", image, "image/png")}, data=_form(layer=4)
    )
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    out = Image.open(io.BytesIO(r.content))
    assert out.size == (224, 224) and out.mode == "RGB"


async def test_npy_is_exactly_what_the_library_returns(client, torch_home):
    image = png_bytes((256, 256), "RGB", seed=3)
    r = await client.post(
        "/visualise",
        files={"file": ("x.png", image, "image/png")},
        data=_form(layer=5, k=7, format="npy"),
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-npy"
    served = np.load(io.BytesIO(r.content), allow_pickle=False)
    spec = ImageSpec(3, 224, IMAGENET_NORMALISATION, resize=256)
    x = decode_input(image, "image/png", spec, 10**8)
    features = load_torchvision_network("alexnet").features
    with one_thread():  # as the service runs a batch of one image
        expected = UndoableSequential(features).visualise_activations(x, layer=5, k=7)[0]
    assert served.dtype == np.float32 and served.shape == (3, 224, 224)
    assert np.abs(served).max() > 0
    assert np.array_equal(served, expected.numpy())


async def test_json_names_the_layer_and_the_kept_activations(client):
    r = await client.post(
        "/visualise",
        files={"file": ("x.jpg", png_bytes((224, 224), "RGB", fmt="JPEG"))},
        data=_form(layer=3, k=5, format="json"),
    )
    body = r.json()
    assert r.status_code == 200 and body["network"] == "alexnet" and body["layer"] == 3
    assert body["layer_name"].startswith("3: MaxPool2d")
    assert body["input_shape"] == [3, 224, 224] and body["activation_shape"] == [64, 27, 27]
    values = [a["value"] for a in body["activations"]]
    assert len(values) == 5 and values == sorted(values, reverse=True)
    png = Image.open(io.BytesIO(base64.b64decode(body["image_png"])))
    assert png.size == (224, 224)


async def test_channel_mode_keeps_one_feature_map(client):
    r = await client.post(
        "/visualise",
        files={"file": ("x.webp", png_bytes((224, 224), "RGB", fmt="WEBP"))},
        data=_form(layer=8, k=4, channel=10, format="json"),
    )
    assert r.status_code == 200
    assert {a["channel"] for a in r.json()["activations"]} == {10}


async def test_trained_cnn_is_visualised_in_its_own_input_space(client, checkpoint_dir):
    image = png_bytes((28, 28), "L", seed=5)
    r = await client.post(
        "/visualise",
        files={"file": ("digit.png", image, "image/png")},
        data=_form(network="cnn", layer=4, k=3, format="npy"),
    )
    assert r.status_code == 200
    served = torch.from_numpy(np.load(io.BytesIO(r.content)))
    pixels = torch.from_numpy(np.array(Image.open(io.BytesIO(image)))).float() / 255
    x = ((pixels - 0.1307) / 0.3081).view(1, 1, 28, 28)  # MNIST normalisation
    features = load_checkpoint(checkpoint_dir / "cnn").model.features
    # the deconvnet projection is the gradient of the kept activations when every ReLU's
    # backward pass is a ReLU: autograd computes it independently
    expected = autograd_projection(features, x, layer=4, k=3)
    assert served.shape == (1, 28, 28) and served.abs().max() > 0
    assert_same_projection(served, expected[0])


@pytest.mark.parametrize(
    "fields, status, error, detail",
    [
        (
            {"layer": 14},
            422,
            "invalid_parameters",
            "layer 14 is out of range: alexnet has layers 1 to 13",
        ),
        (
            {"layer": 0},
            422,
            "invalid_parameters",
            "layer: Input should be greater than or equal to 1",
        ),
        ({"layer": 1, "k": 0}, 422, "invalid_parameters", "k: Input should be greater"),
        ({"layer": 13, "k": 10000}, 422, "invalid_parameters", "k=10000 is too large: layer 13"),
        ({"layer": 1, "channel": 64}, 422, "invalid_parameters", "channel 64 is out of range"),
        ({"layer": 1, "format": "gif"}, 422, "invalid_parameters", "format: Input should be"),
        (
            {"layer": 1, "method": "lrp"},
            422,
            "invalid_parameters",
            "method: Input should be 'deconvnet', 'guided_backprop' or 'saliency'",
        ),
        ({"layer": "two"}, 422, "invalid_parameters", "layer: Input should be a valid integer"),
        ({"layer": 1, "network": "resnet"}, 404, "unknown_model", "no model 'resnet'"),
        ({"layer": 1, "network": "ae"}, 422, "invalid_parameters", "model 'ae' is a autoencoder"),
        ({"layer": 1, "network": "vgg16"}, 503, "model_unavailable", "UNCONV_ALLOW_DOWNLOAD"),
    ],
)
async def test_bad_parameters_are_explained(client, fields, status, error, detail):
    r = await client.post(
        "/visualise", files={"file": ("x.png", png_bytes((224, 224), "RGB"))}, data=_form(**fields)
    )
    assert r.status_code == status
    assert r.json()["error"] == error and detail in r.json()["detail"]


async def test_missing_file_is_a_422(client):
    r = await client.post("/visualise", data=_form(layer=1))
    assert r.status_code == 422 and r.json()["detail"] == "file: Field required"


async def test_batched_requests_match_single_requests(make_client):
    client, app = await make_client(networks=["alexnet"], max_delay_ms=200)
    images = [png_bytes((224, 224), "RGB", seed=s) for s in range(3)]

    async def ask(image):
        r = await client.post(
            "/visualise", files={"file": ("x.png", image)}, data=_form(layer=6, k=5, format="npy")
        )
        return np.load(io.BytesIO(r.content))

    alone = [await ask(i) for i in images]
    calls = spy(app, "alexnet")
    together = await asyncio.gather(*(ask(i) for i in images))
    assert calls == [(("visualise", 6, 5, None, "deconvnet"), 3)]  # one forward pass for the three
    for a, b in zip(alone, together, strict=True):
        torch.testing.assert_close(
            torch.from_numpy(b), torch.from_numpy(a), rtol=1e-4, atol=1e-6 * float(np.abs(a).max())
        )


# -- the three methods ----------------------------------------------------------------------------


async def test_every_method_answers_what_the_library_computes(client, checkpoint_dir):
    image = png_bytes((28, 28), "L", seed=8)
    pixels = torch.from_numpy(np.array(Image.open(io.BytesIO(image)))).float() / 255
    x = ((pixels - 0.1307) / 0.3081).view(1, 1, 28, 28)  # MNIST normalisation
    seq = UndoableSequential(load_checkpoint(checkpoint_dir / "cnn").model.features)
    served = {}
    for method in ("deconvnet", "guided_backprop", "saliency"):
        fields = _form(network="cnn", layer=5, k=6, method=method, format="npy")
        r = await client.post("/visualise", files={"file": ("d.png", image)}, data=fields)
        assert r.status_code == 200
        served[method] = torch.from_numpy(np.load(io.BytesIO(r.content)))
        with one_thread():
            expected = seq.visualise(x, layer=5, k=6, method=method).projection[0]
        assert served[method].abs().max() > 0
        assert_same_projection(served[method], expected)
        r = await client.post(
            "/visualise", files={"file": ("d.png", image)}, data=fields | {"format": "json"}
        )
        assert r.json()["method"] == method
    assert not torch.equal(served["deconvnet"], served["guided_backprop"])
    assert not torch.equal(served["guided_backprop"], served["saliency"])


async def test_deconvnet_is_the_default_and_named_in_json(client):
    image = png_bytes((28, 28), "L", seed=9)
    answers = {}
    for extra in ({}, {"method": "deconvnet"}):
        fields = _form(network="cnn", layer=4, format="npy", **extra)
        r = await client.post("/visualise", files={"file": ("d.png", image)}, data=fields)
        answers[bool(extra)] = r.content
    assert answers[False] == answers[True]
    r = await client.post(
        "/visualise",
        files={"file": ("d.png", image)},
        data=_form(network="cnn", layer=4, format="json"),
    )
    assert r.json()["method"] == "deconvnet"


async def test_the_method_is_part_of_the_batch_key(make_client):
    client, app = await make_client(networks=[], max_delay_ms=200)
    image = png_bytes((28, 28), "L", seed=10)
    calls = spy(app, "cnn")

    async def ask(method):
        fields = _form(network="cnn", layer=2, method=method)
        r = await client.post("/visualise", files={"file": ("d.png", image)}, data=fields)
        assert r.status_code == 200

    await asyncio.gather(*(ask(m) for m in ("saliency", "deconvnet", "saliency", "saliency")))
    assert sorted(calls) == [
        (("visualise", 2, 9, None, "deconvnet"), 1),
        (("visualise", 2, 9, None, "saliency"), 3),
    ]


async def test_the_document_lists_the_methods(client):
    assert get_args(VisualiseMethod) == METHODS
    spec = (await client.get("/openapi.json")).json()
    form = spec["paths"]["/visualise"]["post"]["requestBody"]["content"]["multipart/form-data"]
    method = form["schema"]["properties"]["method"]
    # an empty field, as browsers send it, means the default
    assert method["anyOf"][0]["enum"] == list(METHODS) and method["default"] == "deconvnet"
