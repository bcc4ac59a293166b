"""POST /generate through the real app."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from service.models import load_checkpoint


@pytest.fixture
async def client(make_client):
    client, _ = await make_client()
    return client


async def _npy(client, **body):
    r = await client.post("/generate", json={"format": "npy"} | body)
    assert r.status_code == 200, r.text
    return np.load(io.BytesIO(r.content)), int(r.headers["x-seed"])


async def test_png_grid_of_n_images(client):
    r = await client.post("/generate", json={"n": 16, "seed": 1})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == (8 * 30 + 2, 2 * 30 + 2)
    assert r.headers["x-seed"] == "1"


async def test_same_seed_same_images_and_the_decoder_is_used(client, checkpoint_dir):
    a, seed = await _npy(client, n=4, seed=42)
    b, _ = await _npy(client, n=4, seed=42)
    c, _ = await _npy(client, n=4, seed=43)
    assert seed == 42 and a.shape == (4, 1, 28, 28) and np.array_equal(a, b)
    assert not np.array_equal(a, c)
    vae = load_checkpoint(checkpoint_dir / "vae").model
    expected = vae.generate(torch.zeros(4, 6), generator=torch.Generator().manual_seed(42))
    np.testing.assert_allclose(a, expected.numpy(), rtol=1e-5, atol=1e-6)


async def test_without_seed_one_is_drawn_and_reported(client):
    r = await client.post("/generate", json={"n": 2, "format": "json"})
    body = r.json()
    again, _ = await _npy(client, n=2, seed=body["seed"])
    assert r.headers["x-seed"] == str(body["seed"]) and len(body["images"]) == 2
    assert len(body["images"][0]["z"]) == 6 and again.shape == (2, 1, 28, 28)


async def test_mean_and_log_var_set_the_latent_gaussian(client):
    mean = [[float(i) for i in range(6)]]
    r = await client.post(
        "/generate",
        json={"n": 3, "seed": 5, "mean": mean, "log_var": [[-30.0] * 6], "format": "json"},
    )
    zs = [image["z"] for image in r.json()["images"]]
    assert len(zs) == 3
    for z in zs:
        np.testing.assert_allclose(z, mean[0], atol=1e-5)
    log_var = [[0.5] * 6, [-1.0] * 6]
    r = await client.post(
        "/generate", json={"seed": 5, "mean": [[0.0] * 6] * 2, "log_var": log_var, "format": "json"}
    )
    # z = mean + exp(log_var / 2) * eps, with eps drawn from the request's seed
    eps = torch.randn(2, 6, generator=torch.Generator().manual_seed(5))
    expected = torch.exp(0.5 * torch.tensor(log_var)) * eps
    np.testing.assert_allclose([i["z"] for i in r.json()["images"]], expected, rtol=1e-5)


async def test_prior_samples_are_the_decoder_at_standard_normal_draws(client, checkpoint_dir):
    images, _ = await _npy(client, n=3, seed=11)
    z = torch.randn(3, 6, generator=torch.Generator().manual_seed(11))
    decoder = load_checkpoint(checkpoint_dir / "vae").model.decoder
    with torch.no_grad():
        expected = torch.sigmoid(decoder(z))  # binomial: intensities are sigmoid(logits)
    np.testing.assert_allclose(images, expected.numpy(), rtol=1e-5, atol=1e-6)


async def test_temperature_scales_standard_normal_draws(client, checkpoint_dir):
    images, _ = await _npy(client, n=3, seed=11, temperature=0.5)
    z = 0.5 * torch.randn(3, 6, generator=torch.Generator().manual_seed(11))
    decoder = load_checkpoint(checkpoint_dir / "vae").model.decoder
    with torch.no_grad():
        expected = torch.sigmoid(decoder(z))
    np.testing.assert_allclose(images, expected.numpy(), rtol=1e-5, atol=1e-6)


async def test_interpolation_walks_a_straight_line(client):
    start, end = [0.0] * 6, [2.0] * 6
    r = await client.post(
        "/generate",
        json={"interpolate": {"start": start, "end": end, "steps": 5}, "format": "json"},
    )
    zs = np.array([image["z"] for image in r.json()["images"]])
    assert zs.shape == (5, 6)
    np.testing.assert_allclose(zs[:, 0], [0.0, 0.5, 1.0, 1.5, 2.0], atol=1e-6)


@pytest.mark.parametrize(
    "body, detail",
    [
        ({"n": 0}, "n: Input should be greater than or equal to 1"),
        ({"n": 300}, "n: Input should be less than or equal to 256"),
        ({"mean": [[0.0] * 5]}, "mean vectors have [5] values but the model has 6 latent"),
        ({"mean": [[0.0] * 6, [0.0] * 5]}, "mean vectors have [5, 6] values"),
        ({"log_var": [[100.0] * 6]}, "log_var.0.0: Input should be less than or equal to 30"),
        ({"mean": [[0.0] * 6] * 3, "n": 4}, "n=4 but mean/log_var hold 3 vectors"),
        (
            {"interpolate": {"start": [0.0] * 6, "end": [1.0] * 6}, "mean": [[0.0] * 6]},
            "give either interpolate or mean/log_var",
        ),
        ({"interpolate": {"start": [0.0] * 6, "end": [1.0] * 4}}, "interpolate.end vectors"),
        ({"seed": -1}, "seed: Input should be greater than or equal to 0"),
        ({"temperature": 2.5}, "temperature: Input should be less than or equal to 2"),
        ({"temperature": 0.5, "mean": [[0.0] * 6]}, "temperature scales prior samples"),
        ({"colour": "red"}, "colour: Extra inputs are not permitted"),
        ({"model": "ae"}, "model 'ae' is a autoencoder; /generate accepts ['vae']"),
    ],
)
async def test_invalid_requests_are_422(client, body, detail):
    r = await client.post("/generate", json=body)
    assert r.status_code == 422 and r.json()["error"] == "invalid_parameters"
    assert detail in r.json()["detail"], r.json()


@pytest.mark.parametrize(
    "raw",
    [
        '{"mean": [[NaN, 0, 0, 0, 0, 0]]}',
        '{"mean": [[Infinity, 0, 0, 0, 0, 0]]}',
        '{"n": 2',
        "[1, 2]",
    ],
)
async def test_non_finite_numbers_and_broken_json_are_422(client, raw):
    r = await client.post("/generate", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"] == "invalid_parameters"


async def test_unknown_model_is_404(client):
    r = await client.post("/generate", json={"model": "gan"})
    assert r.status_code == 404 and "/generate accepts ['vae']" in r.json()["detail"]
