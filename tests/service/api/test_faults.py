"""Overload and faults: what is accepted is answered correctly, what is refused says so, and a
fault in one request, one checkpoint or one shutdown touches nothing else."""

import asyncio
import signal
import threading

import httpx
import numpy as np
import pytest

from tests.helpers import ExecutorGate, png_bytes
from tests.servers import running_service, served_checkpoints


async def _npy(response) -> np.ndarray:
    import io

    assert response.status_code == 200, response.text
    return np.load(io.BytesIO(response.content))


async def test_overload_refuses_the_excess_and_answers_every_accepted_request(make_client):
    client, app = await make_client(max_queue=3, concurrent_batches=1, max_batch_size=2)
    gate = ExecutorGate(app)

    def ask(seed):
        body = {"n": 1, "seed": seed, "format": "npy"}
        return asyncio.ensure_future(client.post("/generate", json=body))

    held = [ask(seed) for seed in range(12)]
    await asyncio.sleep(0.3)
    gate.release()
    answers = await asyncio.gather(*held)
    statuses = [r.status_code for r in answers]
    assert set(statuses) == {200, 503} and statuses.count(200) >= 3
    for seed, r in enumerate(answers):
        if r.status_code == 503:
            assert r.json()["error"] == "overloaded" and int(r.headers["retry-after"]) >= 1
        else:  # the same images as when asked alone
            alone = await client.post("/generate", json={"n": 1, "seed": seed, "format": "npy"})
            np.testing.assert_allclose(await _npy(r), await _npy(alone), rtol=1e-5, atol=1e-6)


async def test_one_bad_image_fails_only_its_own_request_in_a_shared_batch(make_client):
    client, app = await make_client(max_delay_ms=300)
    calls = []
    batcher = app.state.engine.batchers["ae"]
    predict = batcher.predict
    batcher.predict = lambda key, payloads: calls.append(len(payloads)) or predict(key, payloads)

    def upload(data):
        return client.post("/reconstruct", files={"file": ("x.png", data, "image/png")})

    good = [png_bytes(seed=s) for s in range(3)]
    answers = await asyncio.gather(
        upload(good[0]), upload(b"\x89PNG broken"), *map(upload, good[1:])
    )
    assert calls == [4]  # one forward pass for all four
    assert [r.status_code for r in answers] == [200, 400, 200, 200]
    assert answers[1].json()["error"] == "invalid_image"
    for data, r in zip(good, (answers[0], *answers[2:]), strict=True):
        assert r.content == (await upload(data)).content


async def test_a_client_that_leaves_frees_its_place_in_the_queue(make_client):
    client, app = await make_client(max_queue=1, concurrent_batches=1)
    gate = ExecutorGate(app)
    first = asyncio.ensure_future(client.post("/generate", json={"n": 1}))
    await asyncio.sleep(0.2)  # taken into the batch held at the gate
    leaving = asyncio.ensure_future(client.post("/generate", json={"n": 1}))
    await asyncio.sleep(0.2)  # waits in the queue, which is now full
    assert (await client.post("/generate", json={"n": 1})).status_code == 503
    leaving.cancel()  # the client goes away: httpx's transport disconnects
    await asyncio.sleep(0.2)
    queued = asyncio.ensure_future(client.post("/generate", json={"n": 1}))
    await asyncio.sleep(0.2)
    gate.release()
    assert (await first).status_code == 200 and (await queued).status_code == 200


async def test_missing_or_corrupt_checkpoints_leave_the_rest_serving(
    make_client, checkpoint_dir, tmp_path
):
    directory = served_checkpoints(checkpoint_dir, tmp_path / "checkpoints")
    (directory / "gone.json").write_text((checkpoint_dir / "ae.json").read_text())
    (directory / "cut.json").write_text((checkpoint_dir / "ae.json").read_text())
    weights = (checkpoint_dir / "ae.safetensors").read_bytes()
    (directory / "cut.safetensors").write_bytes(weights[: len(weights) // 2])
    (directory / "garbled.json").write_text('{"format": ')
    client, _ = await make_client(checkpoint_dir=directory)
    models = {m["name"]: m for m in (await client.get("/models")).json()["models"]}
    for name in ("gone", "cut", "garbled"):
        assert not models[name]["available"] and models[name]["reason"], name
        assert "python -m training" in models[name]["reason"], models[name]["reason"]
    assert "gone.safetensors" in models["gone"]["reason"]
    assert all(models[name]["available"] for name in ("ae", "vae", "cnn"))
    r = await client.post(
        "/reconstruct", files={"file": ("x.png", png_bytes())}, data={"model": "cut"}
    )
    assert r.status_code == 503 and r.json()["error"] == "model_unavailable"
    assert (
        await client.post("/reconstruct", files={"file": ("x.png", png_bytes())})
    ).status_code == 200
    assert (await client.get("/readyz")).status_code == 200


def _queued(url: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith('unconv_queue_depth{model="vae"}'):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_answers_every_request_in_flight_before_exit(checkpoint_dir, tmp_path, workers):
    checkpoints = served_checkpoints(checkpoint_dir, tmp_path / "checkpoints")
    # requests wait in the batching window meanwhile; with two workers, in both of them
    env = {"UNCONV_MAX_DELAY_MS": "5000", "UNCONV_WORKERS": workers}
    with running_service(checkpoints, tmp_path / "server.log", **env) as (server, url):
        answers = {}

        def ask(seed):
            try:
                with httpx.Client(base_url=url, timeout=60) as http:
                    answers[seed] = http.post("/generate", json={"n": 1, "seed": seed})
            except httpx.HTTPError as err:  # reported by the assertion below
                answers[seed] = err

        threads = [threading.Thread(target=ask, args=(seed,)) for seed in range(6)]
        for thread in threads:
            thread.start()
        for _ in range(300):  # until all six wait in the window (at most 30 s)
            if _queued(url) == 6:
                break
            threading.Event().wait(0.1)
        server.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(60)
        assert server.wait(60) in (0, -signal.SIGTERM)
    assert sorted(answers) == list(range(6))
    for r in answers.values():
        assert isinstance(r, httpx.Response) and r.status_code == 200, r
        assert r.content[:4] == b"\x89PNG"
