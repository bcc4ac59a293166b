"""Triton's model-repository extension (service/api/v2_repository.py): off by default, keyed
when on, a retrained checkpoint swapped in under load with no failed request, a broken one
refused while the old keeps serving, and the weights of old models freed."""

import asyncio
import hashlib
import os
import shutil

import numpy as np
import pytest
import torch

from devkit.proc import rss_mb
from service.models import MNIST_NORMALISATION, load_checkpoint, save_checkpoint
from tests.conftest import SMALL

X = np.random.default_rng(0).uniform(0, 1, (2, 1, 28, 28)).astype(np.float32)
REQUEST = {
    "inputs": [
        {"name": "image", "shape": list(X.shape), "datatype": "FP32", "data": X.ravel().tolist()}
    ]
}


def _retrain(directory, seed: int) -> None:
    """A differently seeded ae in place of the served one (as python -m training rewrites it)."""
    config, assumption = SMALL["ae"]
    torch.manual_seed(seed)
    save_checkpoint(
        directory / "ae",
        config.build(assumption),
        config,
        MNIST_NORMALISATION,
        assumption,
        {"trained_at": f"2026-01-0{seed % 9 + 1}T00:00:00Z"},
    )


def _expected(directory) -> np.ndarray:
    """Plain torch on the checkpoint's files."""
    net = load_checkpoint(directory / "ae", torch.device("cpu")).model
    with torch.inference_mode():
        return net.reconstruct(MNIST_NORMALISATION.normalise(torch.from_numpy(X))).numpy()


async def _answer(client) -> np.ndarray:
    r = await client.post("/v2/models/ae/infer", json=REQUEST)
    assert r.status_code == 200, r.text
    (out,) = r.json()["outputs"]
    return np.array(out["data"], dtype=np.float32).reshape(out["shape"])


@pytest.fixture
def own_dir(checkpoint_dir, tmp_path):
    for path in checkpoint_dir.iterdir():
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


async def test_off_by_default_the_index_answers_and_the_model_keeps_serving(make_client):
    client, _ = await make_client()
    for action in ("load", "unload"):
        r = await client.post(f"/v2/repository/models/ae/{action}")
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "repository_disabled"
        assert "UNCONV_MODEL_CONTROL=explicit" in r.json()["error"]
    index = {m["name"]: m for m in (await client.post("/v2/repository/index")).json()}
    assert index["ae"] == {"name": "ae", "version": "1", "state": "READY", "reason": ""}
    assert index["broken"]["state"] == "UNAVAILABLE" and index["broken"]["reason"]
    await _answer(client)


async def test_on_it_needs_the_key(make_client):
    client, _ = await make_client(model_control="explicit", api_key="k")
    assert (await client.post("/v2/repository/models/ae/load")).status_code == 401
    r = await client.post("/v2/repository/models/ae/load", headers={"X-API-Key": "k"})
    assert r.status_code == 200 and r.json()["state"] == "READY", r.text


async def test_a_retrained_checkpoint_is_swapped_in_under_load(make_client, own_dir):
    """Requests keep coming while a retrained ae is loaded: none fails, each answer is the old
    or the new weights' (plain torch on each checkpoint), and after the load only the new."""
    client, _ = await make_client(model_control="explicit", checkpoint_dir=own_dir)
    old = _expected(own_dir)
    shutil.copy(own_dir / "ae.safetensors", own_dir / "old.bin")
    _retrain(own_dir, seed=11)
    new = _expected(own_dir)
    assert np.abs(new - old).max() > 1e-2
    answers = []

    async def traffic():
        for _ in range(40):
            answers.append(await _answer(client))

    loads = []

    async def load():
        await asyncio.sleep(0.05)
        loads.append(await client.post("/v2/repository/models/ae/load"))

    await asyncio.gather(*(traffic() for _ in range(4)), load())
    assert loads[0].status_code == 200, loads[0].text
    assert len(answers) == 160  # zero failed requests (each asserted 200)
    which = [
        "old"
        if np.allclose(a, old, atol=1e-5)
        else "new"
        if np.allclose(a, new, atol=1e-5)
        else "?"
        for a in answers
    ]
    assert "?" not in which and "new" in which
    np.testing.assert_allclose(await _answer(client), new, atol=1e-5)
    # what it was loaded from, in /models and in the v2 metadata
    digest = hashlib.sha256((own_dir / "ae.safetensors").read_bytes()).hexdigest()[:16]
    listed = {m["name"]: m for m in (await client.get("/models")).json()["models"]}
    assert listed["ae"]["metadata"]["sha256"] == digest
    assert listed["ae"]["metadata"]["trained_at"] == "2026-01-03T00:00:00Z"
    assert (await client.get("/v2/models/ae")).json()["parameters"]["sha256"] == digest


async def test_a_broken_checkpoint_keeps_the_old_one_serving(make_client, own_dir):
    client, _ = await make_client(model_control="explicit", checkpoint_dir=own_dir)
    old = _expected(own_dir)
    (own_dir / "ae.safetensors").write_bytes(b"not a safetensors file")
    r = await client.post("/v2/repository/models/ae/load")
    assert r.status_code == 400 and r.json()["code"] == "load_failed", r.text
    np.testing.assert_allclose(await _answer(client), old, atol=1e-5)


async def test_unload_then_load_again_and_a_new_name(make_client, own_dir):
    client, _ = await make_client(model_control="explicit", checkpoint_dir=own_dir)
    assert (await client.post("/v2/repository/models/ae/unload")).status_code == 200
    r = await client.post("/v2/models/ae/infer", json=REQUEST)
    assert (r.status_code, r.json()["code"]) == (404, "model_not_loaded")
    native = await client.post(
        "/reconstruct", files={"file": ("x.png", b"x", "image/png")}, data={"model": "ae"}
    )
    assert native.status_code == 503 and "unload" in native.json()["detail"]
    assert (await client.post("/v2/repository/models/ae/load")).status_code == 200
    await _answer(client)
    for suffix in (".json", ".safetensors"):
        shutil.copy(own_dir / f"ae{suffix}", own_dir / f"ae2{suffix}")
    assert (await client.get("/v2/models/ae2")).status_code == 404
    assert (await client.post("/v2/repository/models/ae2/load")).status_code == 200
    assert (await client.post("/v2/models/ae2/infer", json=REQUEST)).status_code == 200
    spec = (await client.get("/openapi.json")).json()
    assert "/v2/models/ae2/infer" in spec["paths"]  # the document follows
    r = await client.post("/v2/repository/models/gan/load")
    assert (r.status_code, r.json()["code"]) == (404, "unknown_model")


async def test_twenty_swaps_free_the_old_weights(make_client, own_dir):
    """A bigger ae (so that its weights dominate): RSS after twenty more swaps is where the
    first few left it. (Each thread that loads or runs the model may keep one freed copy in its
    own malloc arena, so the first swaps may grow the heap by a few copies; later ones reuse
    them.)"""
    client, _ = await make_client(model_control="explicit", checkpoint_dir=own_dir)
    config, assumption = SMALL["ae"]
    big = type(config)(hid_channels=512, code_channels=256, kernel_size=3)  # 9 MB of weights
    for seed in range(5):
        torch.manual_seed(seed % 2)
        save_checkpoint(own_dir / "ae", big.build(assumption), big, MNIST_NORMALISATION, assumption)
        assert (await client.post("/v2/repository/models/ae/load")).status_code == 200
        await _answer(client)
    size = (own_dir / "ae.safetensors").stat().st_size
    after_warmup = rss_mb(os.getpid())[0] * 2**20
    for _ in range(20):
        assert (await client.post("/v2/repository/models/ae/load")).status_code == 200
        await _answer(client)
    grown = rss_mb(os.getpid())[0] * 2**20 - after_warmup
    assert grown < 2 * size, (grown, size)  # twenty copies kept would be 20 * size


async def test_a_model_sent_in_the_load_request_is_refused(make_client, own_dir):
    """Triton's load takes ``config`` and ``file:`` parameters (a model in the request); the
    service serves its checkpoints only, so it says no rather than load its own files."""
    client, _ = await make_client(model_control="explicit", checkpoint_dir=own_dir)
    sent = {"parameters": {"config": "{}", "file:1/model.onnx": "AAAA"}}
    r = await client.post("/v2/repository/models/ae/load", json=sent)
    assert (r.status_code, r.json()["code"]) == (422, "invalid_parameters"), r.text
    assert "'config'" in r.json()["error"] and "'file:1/model.onnx'" in r.json()["error"]
    r = await client.post("/v2/repository/models/ae/load", content=b"[1]")
    assert (r.status_code, r.json()["code"]) == (422, "invalid_parameters"), r.text
    assert "JSON object" in r.json()["error"]
    r = await client.post("/v2/repository/models/ae/load", json={"parameters": {}})
    assert r.status_code == 200, r.text
    r = await client.post(
        "/v2/repository/models/ae/unload", json={"parameters": {"unload_dependents": True}}
    )
    assert r.status_code == 200 and r.json()["state"] == "UNAVAILABLE", r.text
