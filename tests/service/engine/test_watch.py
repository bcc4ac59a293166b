"""UNCONV_WATCH_CHECKPOINTS (service/engine/watch.py): a checkpoint retrained, broken, fixed or
new on disk is served without a restart or a load call when the watch is on, and not when it
is off; a model unloaded on request stays unloaded. Answers are compared with plain torch on
the files."""

import asyncio
import shutil

import numpy as np
import pytest

from service.engine import Engine
from tests.service.api.test_v2_repository import REQUEST, _expected, _retrain

INTERVAL_S = 0.05


@pytest.fixture
def own_dir(checkpoint_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(Engine, "WATCH_INTERVAL_S", INTERVAL_S)
    for path in checkpoint_dir.iterdir():
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


async def _answer(client, name: str = "ae") -> np.ndarray:
    r = await client.post(f"/v2/models/{name}/infer", json=REQUEST)
    assert r.status_code == 200, r.text
    (out,) = r.json()["outputs"]
    return np.array(out["data"], dtype=np.float32).reshape(out["shape"])


async def _until(condition, timeout_s: float = 10.0) -> None:
    """Poll ``await condition()`` until it holds; fail after ``timeout_s``."""
    for _ in range(int(timeout_s / INTERVAL_S)):
        if await condition():
            return
        await asyncio.sleep(INTERVAL_S)
    raise AssertionError(f"not within {timeout_s} s")


def _serves(client, expected: np.ndarray, name: str = "ae"):
    async def condition() -> bool:
        r = await client.post(f"/v2/models/{name}/infer", json=REQUEST)
        if r.status_code == 404:  # not served yet
            return False
        return np.allclose(await _answer(client, name), expected, atol=1e-5)

    return condition


async def test_a_retrained_then_broken_then_fixed_checkpoint_is_followed(make_client, own_dir):
    client, _ = await make_client(watch_checkpoints=True, checkpoint_dir=own_dir)
    old = _expected(own_dir)
    _retrain(own_dir, seed=11)
    new = _expected(own_dir)
    assert np.abs(new - old).max() > 1e-2
    await _until(_serves(client, new))

    good = (own_dir / "ae.safetensors").read_bytes()
    (own_dir / "ae.safetensors").write_bytes(b"half a file")
    await asyncio.sleep(20 * INTERVAL_S)  # looked at many times, failed to load each change
    np.testing.assert_allclose(await _answer(client), new, atol=1e-5)

    (own_dir / "ae.safetensors").write_bytes(good)
    _retrain(own_dir, seed=12)
    await _until(_serves(client, _expected(own_dir)))


async def test_a_new_checkpoint_is_served_by_its_name(make_client, own_dir):
    client, _ = await make_client(watch_checkpoints=True, checkpoint_dir=own_dir)
    assert (await client.post("/v2/models/ae2/infer", json=REQUEST)).status_code == 404
    for suffix in (".safetensors", ".json"):  # weights first, as python -m training writes
        shutil.copy(own_dir / f"ae{suffix}", own_dir / f"ae2{suffix}")
    await _until(_serves(client, _expected(own_dir), name="ae2"))


async def test_off_by_default_the_old_weights_keep_serving(make_client, own_dir):
    client, _ = await make_client(checkpoint_dir=own_dir)
    old = _expected(own_dir)
    _retrain(own_dir, seed=11)
    await asyncio.sleep(20 * INTERVAL_S)
    np.testing.assert_allclose(await _answer(client), old, atol=1e-5)


async def test_a_model_unloaded_on_request_stays_unloaded(make_client, own_dir):
    client, _ = await make_client(
        watch_checkpoints=True, model_control="explicit", checkpoint_dir=own_dir
    )
    assert (await client.post("/v2/repository/models/ae/unload")).status_code == 200
    _retrain(own_dir, seed=11)
    await asyncio.sleep(20 * INTERVAL_S)
    r = await client.post("/v2/models/ae/infer", json=REQUEST)
    assert (r.status_code, r.json()["code"]) == (404, "model_not_loaded")
    assert (await client.post("/v2/repository/models/ae/load")).status_code == 200
    np.testing.assert_allclose(await _answer(client), _expected(own_dir), atol=1e-5)
