"""POST /generate with `label`: a tiny VAE whose labelled prior has known, far-apart means."""

import io
import shutil

import numpy as np
import pytest
import torch
from unconv_client import AsyncUnconvClient, UnconvError

from service.models import MNIST_NORMALISATION, ConvVAEConfig, save_checkpoint

LATENT = 4
SCALE = 0.01  # every component's standard deviation, per dimension


@pytest.fixture(scope="module")
def labelled_dir(tmp_path_factory, checkpoint_dir):
    """The shared checkpoints (a vae without labels) and `digits`, a VAE with labels a, b, c
    whose prior component k sits at 10 * k in every latent dimension."""
    directory = tmp_path_factory.mktemp("labelled")
    for path in checkpoint_dir.glob("vae.*"):
        shutil.copy(path, directory / path.name)
    config = ConvVAEConfig(
        hid_channels=4,
        code_channels=4,
        hidden_features=8,
        latent_features=LATENT,
        labels=("a", "b", "c"),
    )
    torch.manual_seed(3)
    model = config.build("binomial")
    model.prior.means.copy_(10.0 * torch.arange(3.0).unsqueeze(1).expand(3, LATENT))
    model.prior.scale_tril.copy_(SCALE * torch.eye(LATENT).repeat(3, 1, 1))
    model.prior.weights.copy_(torch.tensor([1e-6, 1e-6, 1 - 2e-6]))
    save_checkpoint(directory / "digits", model, config, MNIST_NORMALISATION, "binomial")
    return directory, model


@pytest.fixture
async def client(make_client, labelled_dir):
    client, _ = await make_client(checkpoint_dir=labelled_dir[0])
    return client


async def _json(client, **body):
    r = await client.post("/generate", json={"model": "digits", "format": "json"} | body)
    assert r.status_code == 200, r.text
    return np.array([image["z"] for image in r.json()["images"]])


async def test_models_lists_labels_only_for_a_model_with_them(client):
    models = {m["name"]: m for m in (await client.get("/models")).json()["models"]}
    assert models["digits"]["labels"] == ["a", "b", "c"]
    assert models["vae"]["labels"] is None


async def test_label_draws_from_its_component(client):
    z = await _json(client, n=3, seed=9, label=1)
    eps = torch.randn(3, LATENT, generator=torch.Generator().manual_seed(9)).numpy()
    np.testing.assert_allclose(z, 10.0 + SCALE * eps, rtol=1e-5)


async def test_temperature_scales_the_noise_around_the_component(client):
    models = {m["name"]: m for m in (await client.get("/models")).json()["models"]}
    assert models["digits"]["temperature"] == 1.0  # the config's prior_temperature
    z = await _json(client, n=3, seed=9, label=1, temperature=0.25)
    eps = torch.randn(3, LATENT, generator=torch.Generator().manual_seed(9)).numpy()
    np.testing.assert_allclose(z, 10.0 + 0.25 * SCALE * eps, rtol=1e-5)
    np.testing.assert_allclose(await _json(client, n=2, label=2, temperature=0), 20.0)


async def test_labels_give_one_class_per_image_and_set_n(client):
    z = await _json(client, seed=4, labels=[0, 2, 1, 0])
    assert z.shape == (4, LATENT)
    np.testing.assert_allclose(z.mean(1), [0.0, 20.0, 10.0, 0.0], atol=0.05)


async def test_without_label_components_come_from_the_prior_weights(client):
    # the weights put (almost) everything on the last component
    np.testing.assert_allclose(await _json(client, n=5, seed=1), 20.0, atol=0.05)


async def test_the_label_changes_the_decoded_images(client, labelled_dir):
    _, model = labelled_dir
    images = {}
    for label in (0, 2):
        r = await client.post(
            "/generate",
            json={"model": "digits", "n": 2, "seed": 3, "label": label, "format": "npy"},
        )
        images[label] = np.load(io.BytesIO(r.content))
        eps = torch.randn(2, LATENT, generator=torch.Generator().manual_seed(3))
        expected = torch.sigmoid(model.decoder(10.0 * label + SCALE * eps))
        np.testing.assert_allclose(images[label], expected.detach().numpy(), rtol=1e-4, atol=1e-5)
    assert np.abs(images[0] - images[2]).max() > 0.01


@pytest.mark.parametrize(
    "body, detail",
    [
        ({"model": "vae", "label": 1}, "model 'vae' has no labels"),
        ({"label": 3}, "label 3 is out of range: model 'digits' has labels 0 to 2 (a, b, c)"),
        ({"labels": [0, 5]}, "label 5 is out of range"),
        ({"label": -1}, "label: Input should be greater than or equal to 0"),
        ({"label": 1000}, "label: Input should be less than or equal to 999"),
        ({"labels": []}, "labels: List should have at least 1 item"),
        ({"label": 0, "labels": [0]}, "give either label or labels, not both"),
        ({"labels": [0, 1], "n": 3}, "n=3 but labels holds 2 labels"),
        ({"label": 0, "mean": [[0.0] * LATENT]}, "give no mean, log_var or interpolate"),
    ],
)
async def test_bad_labels_are_422(client, body, detail):
    r = await client.post("/generate", json={"model": "digits"} | body)
    assert r.status_code == 422 and r.json()["error"] == "invalid_parameters", r.text
    assert detail in r.json()["detail"], r.json()


async def test_openapi_documents_the_label_range(client):
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    label = schemas["GenerateRequest"]["properties"]["label"]["anyOf"][0]
    items = schemas["GenerateRequest"]["properties"]["labels"]["anyOf"][0]
    assert (label["minimum"], label["maximum"]) == (0, 999)
    assert (items["items"]["minimum"], items["items"]["maximum"], items["maxItems"]) == (
        0,
        999,
        256,
    )
    assert "labels" in schemas["ModelInfo"]["properties"]


async def test_the_client_sends_label_and_labels(client):
    api = AsyncUnconvClient(http=client)
    body = await api.generate(n=2, seed=9, model="digits", format="json", label=1)
    eps = torch.randn(2, LATENT, generator=torch.Generator().manual_seed(9)).numpy()
    np.testing.assert_allclose([i["z"] for i in body["images"]], 10.0 + SCALE * eps, rtol=1e-5)
    array = await api.generate(seed=1, model="digits", format="npy", labels=[0, 2, 2])
    assert array.shape == (3, 1, 28, 28)
    with pytest.raises(UnconvError) as err:
        await api.generate(model="vae", label=0)
    assert err.value.status == 422 and "has no labels" in err.value.detail


async def test_the_document_bounds_label_by_each_models_labels(client):
    """`label` and `labels` are indices into the model's own labels (digits: a, b, c), and
    null for a VAE without labels; the stated edge is where the answer changes."""
    spec = (await client.get("/openapi.json")).json()
    branches = {
        b["properties"]["model"]["const"]: b["properties"]
        for b in spec["components"]["schemas"]["GenerateRequest"]["anyOf"]
    }
    index = {"type": "integer", "minimum": 0, "maximum": 2}
    assert branches["digits"]["label"] == {"anyOf": [index, {"type": "null"}]}
    assert branches["digits"]["labels"]["anyOf"][0]["items"] == index
    assert branches["vae"]["label"] == {"type": "null"}
    assert branches["vae"]["labels"] == {"type": "null"}
    for label, status in ((2, 200), (3, 422)):
        r = await client.post("/generate", json={"model": "digits", "n": 1, "label": label})
        assert r.status_code == status, r.text
    r = await client.post("/generate", json={"model": "vae", "n": 1, "label": 0})
    assert r.status_code == 422, r.text
    # the v2 route states the same bound for its sampling parameters
    body = spec["paths"]["/v2/models/digits/infer"]["post"]["requestBody"]
    (sampling,) = [
        b
        for b in body["content"]["application/json"]["schema"]["anyOf"]
        if b["properties"]["inputs"]["maxItems"] == 0
    ]
    assert sampling["properties"]["parameters"]["anyOf"][0]["properties"]["label"] == {
        "anyOf": [index, {"type": "null"}]
    }
    for label, status in ((2, 200), (3, 400)):
        request = {"inputs": [], "parameters": {"n": 1, "label": label}}
        r = await client.post("/v2/models/digits/infer", json=request)
        assert r.status_code == status, r.text
