"""``GET /atlas`` and ``GET /atlas/{network}/{layer}/{channel}`` through the real app: each entry's
projection is /visualise's of that item with the channel set and k = 1; clear 404s; the ETag;
the API key; a stale atlas listed with why and not served; atlases followed by the watch and
by the repository's load."""

import asyncio
import base64
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from service.engine import Engine
from training.__main__ import main

LAYERS = (1, 4, 6)
INTERVAL_S = 0.05


@pytest.fixture(scope="module")
def atlas_dir(checkpoint_dir, tmp_path_factory):
    """The conftest cnn's atlas over mnist-5k's held-out digits, layers 1, 4 and 6."""
    directory = tmp_path_factory.mktemp("atlas-checkpoints")
    for suffix in (".json", ".safetensors"):
        shutil.copy(checkpoint_dir / f"cnn{suffix}", directory / f"cnn{suffix}")
    argv = ["atlas", "--network", "cnn", "--checkpoints", str(directory), "--no-progress"]
    assert main([*argv, "--layers", ",".join(map(str, LAYERS)), "--batch-size", "500"]) == 0
    return directory


@pytest.fixture
def own_dir(atlas_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(Engine, "WATCH_INTERVAL_S", INTERVAL_S)
    shutil.copytree(atlas_dir, tmp_path, dirs_exist_ok=True)
    return tmp_path


def _pixels(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))), dtype=np.int16)


async def test_the_atlases_are_listed(make_client, atlas_dir):
    client, _ = await make_client(checkpoint_dir=atlas_dir)
    r = await client.get("/atlas")
    assert r.status_code == 200, r.text
    (atlas,) = r.json()["atlases"]
    assert atlas["network"] == "cnn" and atlas["served"] and atlas["reason"] is None
    assert atlas["dataset"] == {"name": "mnist-5k", "split": "heldout", "count": 1000}
    assert [(e["layer"], e["feature_maps"]) for e in atlas["layers"]] == [(1, 4), (4, 8), (6, 8)]


async def test_each_entry_is_the_visualisation_of_its_item(make_client, atlas_dir):
    client, _ = await make_client(checkpoint_dir=atlas_dir)
    r = await client.get("/atlas/cnn/4/3", params={"format": "json"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["network"], body["layer"], body["channel"]) == ("cnn", 4, 3)
    values = [e["value"] for e in body["entries"]]
    assert len(values) == 9 and values == sorted(values, reverse=True)
    for entry in body["entries"]:
        image = base64.b64decode(entry["image_png"])
        form = {"network": "cnn", "layer": "4", "channel": "3", "k": "1"}
        files = {"file": ("digit.png", image, "image/png")}
        seen = await client.post("/visualise", files=files, data=form | {"format": "json"})
        kept = seen.json()["activations"][0]
        assert (kept["y"], kept["x"]) == (entry["y"], entry["x"])
        assert kept["value"] == pytest.approx(entry["value"], rel=1e-5)
        npy = await client.post("/visualise", files=files, data=form | {"format": "npy"})
        projection = np.load(io.BytesIO(npy.content))[0]  # (H, W)
        top, left, bottom, right = entry["box"]
        inside = projection[top:bottom, left:right]
        assert np.abs(projection).sum() == pytest.approx(np.abs(inside).sum())  # none outside
        drawn = (0.5 + 0.5 * inside / np.abs(inside).max()) * 255 + 0.5
        assert np.abs(_pixels(entry["projection_png"]) - drawn.astype(np.uint8)).max() <= 1
        assert np.array_equal(
            _pixels(entry["patch_png"]), _pixels(entry["image_png"])[top:bottom, left:right]
        )


async def test_the_png_is_figure_2_with_an_etag(make_client, atlas_dir):
    client, _ = await make_client(checkpoint_dir=atlas_dir)
    r = await client.get("/atlas/cnn/6/0")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["cache-control"] == "no-cache"
    picture = Image.open(io.BytesIO(r.content))
    # two 3 x 3 grids of 50-pixel tiles (10-pixel fields, enlarged 5 times) and a gap
    assert picture.size == (2 * (3 * 52 + 2) + 3 * 5 + 4, 3 * 52 + 2)
    again = await client.get("/atlas/cnn/6/0", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    other = await client.get("/atlas/cnn/6/0", params={"format": "json"})
    assert other.headers["etag"] != r.headers["etag"]
    first = await client.get("/atlas/cnn/6/0", params={"format": "json", "top": 1})
    assert first.json()["entries"] == other.json()["entries"][:1]
    assert first.headers["etag"] != other.headers["etag"]


@pytest.mark.parametrize(
    "path, code, says",
    [
        ("/atlas/vae/1/0", "no_atlas", "no atlas for 'vae'"),
        (
            "/atlas/cnn/2/0",
            "not_in_atlas",
            "layer 2 is not in the atlas of 'cnn'; it holds [1, 4, 6]",
        ),
        ("/atlas/cnn/4/8", "not_in_atlas", "layer 4 of 'cnn' has channels 0 to 7"),
    ],
)
async def test_unknown_networks_layers_and_maps_are_clear_404s(
    make_client, atlas_dir, path, code, says
):
    client, _ = await make_client(checkpoint_dir=atlas_dir)
    r = await client.get(path)
    assert r.status_code == 404 and r.json()["error"] == code
    assert says in r.json()["detail"]
    bad = await client.get("/atlas/cnn/0/0")
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_parameters"


async def test_the_api_key_guards_the_atlas(make_client, atlas_dir):
    client, _ = await make_client(checkpoint_dir=atlas_dir, api_key="k")
    for path in ("/atlas", "/atlas/cnn/1/0"):
        assert (await client.get(path)).status_code == 401
        assert (await client.get(path, headers={"X-API-Key": "k"})).status_code == 200


def _make_stale(directory) -> dict:
    path = directory / "atlases" / "cnn.json"
    document = json.loads(path.read_text())
    path.write_text(json.dumps(document | {"weights_sha256": "0" * 64}))
    return document


async def _served(client) -> bool:
    (atlas,) = (await client.get("/atlas")).json()["atlases"]
    return atlas["served"]


async def test_a_stale_atlas_is_not_served_and_a_fixed_one_is_followed(make_client, own_dir):
    document = _make_stale(own_dir)
    client, _ = await make_client(checkpoint_dir=own_dir, watch_checkpoints=True)
    (atlas,) = (await client.get("/atlas")).json()["atlases"]
    assert not atlas["served"] and "built for weights 0000000000000000" in atlas["reason"]
    r = await client.get("/atlas/cnn/1/0")
    assert r.status_code == 404 and r.json()["error"] == "no_atlas"
    assert "built for weights" in r.json()["detail"]
    (own_dir / "atlases" / "cnn.json").write_text(json.dumps(document))
    for _ in range(200):
        if await _served(client):
            break
        await asyncio.sleep(INTERVAL_S)
    assert await _served(client)


async def test_a_repository_load_checks_the_atlas_again(make_client, own_dir):
    client, _ = await make_client(checkpoint_dir=own_dir, model_control="explicit")
    assert await _served(client)
    weights = own_dir / "cnn.safetensors"
    weights.write_bytes(weights.read_bytes())  # the same weights: still the atlas's
    assert (await client.post("/v2/repository/models/cnn/load")).status_code == 200
    assert await _served(client)
    assert (await client.post("/v2/repository/models/cnn/unload")).status_code == 200
    (atlas,) = (await client.get("/atlas")).json()["atlases"]
    assert not atlas["served"] and "is not served" in atlas["reason"]


async def test_the_document_states_the_served_atlases(make_client, atlas_dir, checkpoint_dir):
    client, _ = await make_client(checkpoint_dir=atlas_dir)
    spec = (await client.get("/openapi.json")).json()
    parameters = spec["paths"]["/atlas/{network}/{layer}/{channel}"]["get"]["parameters"]
    schemas = {p["name"]: p["schema"] for p in parameters}
    assert schemas["network"]["enum"] == ["cnn"]
    assert schemas["layer"]["enum"] == list(LAYERS)
    assert schemas["channel"]["maximum"] == 7  # layers 4 and 6 have 8 maps
    client, _ = await make_client(checkpoint_dir=checkpoint_dir)  # no atlas
    spec = (await client.get("/openapi.json")).json()
    assert "/atlas/{network}/{layer}/{channel}" not in spec["paths"] and "/atlas" in spec["paths"]
