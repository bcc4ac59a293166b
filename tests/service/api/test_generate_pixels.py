"""POST /generate's `pixel_temperature`: a binomial VAE served at 0.5, and a Gaussian one that has
no Bernoulli pixels to temper."""

import asyncio
import io
import shutil

import numpy as np
import pytest
import torch

from service.models import MNIST_NORMALISATION, ConvVAEConfig, load_checkpoint, save_checkpoint

LATENT = 4


@pytest.fixture(scope="module")
def pixels_dir(tmp_path_factory, checkpoint_dir):
    """The shared checkpoints, `sharp` (binomial, served at pixel temperature 0.5) and `gaussian`
    (a VAE assuming Gaussian pixels)."""
    directory = tmp_path_factory.mktemp("pixels")
    for path in checkpoint_dir.glob("*"):
        shutil.copy(path, directory / path.name)
    small = {"hid_channels": 4, "code_channels": 4, "hidden_features": 8, "latent_features": LATENT}
    for name, config, assumption in [
        ("sharp", ConvVAEConfig(**small, pixel_temperature=0.5), "binomial"),
        ("gaussian", ConvVAEConfig(**small), "gauss"),
    ]:
        torch.manual_seed(5)
        model = config.build(assumption)
        save_checkpoint(directory / name, model, config, MNIST_NORMALISATION, assumption)
    # a VAE whose weights cannot be read: listed, unavailable, without a loaded model's figures
    shutil.copy(directory / "sharp.json", directory / "unreadable.json")
    (directory / "unreadable.safetensors").write_bytes(b"not safetensors")
    return directory


@pytest.fixture
async def client(make_client, pixels_dir):
    client, _ = await make_client(checkpoint_dir=pixels_dir, max_delay_ms=50.0)
    return client


def _expected(pixels_dir, seed: int, n: int, t: float) -> np.ndarray:
    """N(0, I) draws from the request's seed, decoded, each pixel's Bernoulli tempered by ``t``:
    p^(1/t) / (p^(1/t) + (1-p)^(1/t)) from the probabilities themselves."""
    decoder = load_checkpoint(pixels_dir / "sharp").model.decoder
    z = torch.randn(n, LATENT, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        p = torch.sigmoid(decoder(z)).double()
    return (p ** (1 / t) / (p ** (1 / t) + (1 - p) ** (1 / t))).numpy()


async def _npy(client, **body) -> np.ndarray:
    r = await client.post("/generate", json={"model": "sharp", "format": "npy"} | body)
    assert r.status_code == 200, r.text
    return np.load(io.BytesIO(r.content))


async def test_models_lists_each_vaes_own(client):
    models = {m["name"]: m for m in (await client.get("/models")).json()["models"]}
    assert models["sharp"]["pixel_temperature"] == 0.5
    assert models["vae"]["pixel_temperature"] == 1.0
    assert models["ae"]["pixel_temperature"] is None
    assert not models["unreadable"]["available"]
    assert models["unreadable"]["pixel_temperature"] is None


async def test_the_models_own_by_default_and_the_requests_when_given(client, pixels_dir):
    np.testing.assert_allclose(
        await _npy(client, n=3, seed=4), _expected(pixels_dir, 4, 3, 0.5), rtol=1e-4, atol=1e-6
    )
    for t in (1.0, 0.25, 2.0):
        got = await _npy(client, n=3, seed=4, pixel_temperature=t)
        np.testing.assert_allclose(got, _expected(pixels_dir, 4, 3, t), rtol=1e-4, atol=1e-6)


async def test_requests_batched_together_keep_their_own(client, pixels_dir):
    temperatures = [0.25, 1.0, None, 2.0]
    bodies = [
        {"n": 2, "seed": 7} | ({} if t is None else {"pixel_temperature": t}) for t in temperatures
    ]
    results = await asyncio.gather(*(_npy(client, **body) for body in bodies))
    for t, got in zip(temperatures, results, strict=True):
        np.testing.assert_allclose(got, _expected(pixels_dir, 7, 2, t or 0.5), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("t", [0, 0.001, 2.5, "hot", None])
async def test_out_of_range_is_a_422_naming_it(client, t):
    r = await client.post(
        "/generate", json={"model": "sharp", "pixel_temperature": t if t is not None else -1}
    )
    assert r.status_code == 422 and "pixel_temperature" in r.text


async def test_a_gaussian_vae_takes_only_1(client):
    r = await client.post("/generate", json={"model": "gaussian", "pixel_temperature": 0.5})
    assert r.status_code == 422
    assert r.json()["detail"] == (
        "pixel_temperature tempers Bernoulli pixels, and model 'gaussian' assumes 'gauss': leave "
        "it out or give 1"
    )
    for body in ({}, {"pixel_temperature": 1}):
        r = await client.post("/generate", json={"model": "gaussian", "n": 2} | body)
        assert r.status_code == 200, r.text
