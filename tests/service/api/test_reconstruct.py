"""POST /reconstruct through the real app."""

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from service.models import load_checkpoint
from tests.helpers import png_bytes


@pytest.fixture
async def client(make_client):
    client, _ = await make_client()
    return client


def _known_digit() -> tuple[bytes, torch.Tensor]:
    """A 28x28 greyscale PNG of a diagonal gradient, and its pixels in [0, 1]."""
    pixels = (torch.arange(28).view(28, 1) * 4 + torch.arange(28).view(1, 28) * 5).to(torch.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels.numpy(), "L").save(out, format="PNG")
    return out.getvalue(), pixels.float().div(255).view(1, 1, 28, 28)


def _png_pixels(data: bytes) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(io.BytesIO(data)))).int()


async def test_reconstructions_equal_plain_torch_on_known_pixels(client, checkpoint_dir):
    image, pixels = _known_digit()
    x = (pixels - 0.1307) / 0.3081  # MNIST normalisation
    r = await client.post("/reconstruct", files={"file": ("d.png", image, "image/png")})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    served = Image.open(io.BytesIO(r.content))
    assert served.size == (28, 28) and served.mode == "L"
    ae = load_checkpoint(checkpoint_dir / "ae").model
    with torch.no_grad():
        expected = torch.sigmoid(ae(x))[0, 0].mul(255).round().int()  # binomial
    assert (_png_pixels(r.content) - expected).abs().max() <= 1

    r = await client.post(
        "/reconstruct",
        files={"file": ("d.png", image, "image/png")},
        data={"model": "vae", "format": "json"},
    )
    vae = load_checkpoint(checkpoint_dir / "vae").model
    with torch.no_grad():
        mean, log_var = vae.encoder(x).chunk(2, dim=1)  # the encoder's (mean, log-variance)
        expected = torch.sigmoid(vae.decoder(mean))[0, 0].mul(255).round().int()
    served = r.json()["images"][0]
    np.testing.assert_allclose(served["mean"], mean[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(served["log_var"], log_var[0], rtol=1e-4, atol=1e-5)
    assert (_png_pixels(base64.b64decode(served["image_png"])) - expected).abs().max() <= 1


async def test_several_files_make_a_grid_in_order(client):
    files = [
        ("file", (f"{i}.png", png_bytes((28, 28), "L", seed=i), "image/png")) for i in range(3)
    ]
    r = await client.post("/reconstruct", files=files)
    assert Image.open(io.BytesIO(r.content)).size == (3 * 30 + 2, 32)
    r = await client.post("/reconstruct", files=files, data={"format": "json"})
    body = r.json()
    assert body["model"] == "ae" and body["assumption"] == "binomial" and len(body["images"]) == 3
    assert body["images"][0]["mean"] is None
    single = await client.post("/reconstruct", files=[files[2]], data={"format": "json"})
    assert single.json()["images"][0] == body["images"][2]


async def test_vae_json_carries_the_latent_distribution(client):
    r = await client.post(
        "/reconstruct",
        files={"file": ("d.png", png_bytes((40, 30), "RGB"))},
        data={"model": "vae", "format": "json"},
    )
    image = r.json()["images"][0]
    assert r.status_code == 200 and len(image["mean"]) == 6 and len(image["log_var"]) == 6
    png = Image.open(io.BytesIO(base64.b64decode(image["image_png"])))
    assert png.size == (28, 28)


async def test_reconstruction_is_deterministic(client):
    files = {"file": ("d.png", png_bytes(seed=9), "image/png")}
    a = await client.post("/reconstruct", files=files, data={"model": "vae"})
    b = await client.post("/reconstruct", files=files, data={"model": "vae"})
    assert a.content == b.content


@pytest.mark.parametrize(
    "content, content_type, status, error",
    [
        (b"not an image at all", "image/png", 400, "invalid_image"),
        (b"%PDF-1.4 ...", "application/pdf", 415, "unsupported_media_type"),
        (png_bytes(fmt="GIF"), "image/gif", 415, "unsupported_media_type"),
        (png_bytes((64, 64), "RGB")[:200], "image/png", 400, "invalid_image"),
        (b"", "image/png", 400, "invalid_image"),
    ],
    ids=["garbage", "pdf", "gif", "truncated", "empty"],
)
async def test_bad_images_are_refused(client, content, content_type, status, error):
    r = await client.post("/reconstruct", files={"file": ("x", content, content_type)})
    assert r.status_code == status and r.json()["error"] == error, r.json()


async def test_wrong_model_kind_and_unknown_model(client):
    files = {"file": ("d.png", png_bytes(), "image/png")}
    r = await client.post("/reconstruct", files=files, data={"model": "cnn"})
    assert r.status_code == 422 and "/reconstruct accepts ['ae', 'vae']" in r.json()["detail"]
    r = await client.post("/reconstruct", files=files, data={"model": "nope"})
    assert r.status_code == 404 and r.json()["error"] == "unknown_model"
    r = await client.post("/reconstruct", files=files, data={"model": "broken"})
    assert r.status_code == 503 and r.json()["error"] == "model_unavailable"
    assert r.headers["retry-after"] == "30"
    assert "unknown architecture 'gan'" in r.json()["detail"] and "retrain" in r.json()["detail"]
