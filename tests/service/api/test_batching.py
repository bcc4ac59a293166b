"""Batching through HTTP: shared forward passes, a full queue, deadlines, disconnects, shutdown."""

import asyncio
import io

import numpy as np

from tests.helpers import ExecutorGate, png_bytes, spy


async def test_concurrent_requests_share_one_forward_pass(make_client):
    client, app = await make_client(max_delay_ms=200)
    calls = spy(app, "vae")

    async def ask(seed):
        r = await client.post("/generate", json={"n": 2, "seed": seed, "format": "npy"})
        return np.load(io.BytesIO(r.content))

    together = await asyncio.gather(*(ask(s) for s in range(6)))
    assert calls == [(("generate",), 6)]
    for seed, images in enumerate(together):
        # batching changes results by float rounding at most
        np.testing.assert_allclose(images, await ask(seed), rtol=1e-5, atol=1e-6)


async def test_batches_form_per_shared_parameters(make_client):
    client, app = await make_client(max_delay_ms=200, networks=["alexnet"])
    calls = spy(app, "alexnet")
    image = png_bytes((224, 224), "RGB")

    async def ask(layer):
        r = await client.post(
            "/visualise", files={"file": ("x.png", image)}, data={"layer": str(layer)}
        )
        assert r.status_code == 200

    await asyncio.gather(ask(2), ask(5), ask(2), ask(5), ask(2))
    assert sorted(calls) == [
        (("visualise", 2, 9, None, "deconvnet"), 3),
        (("visualise", 5, 9, None, "deconvnet"), 2),
    ]


async def test_reconstruct_counts_images_not_requests(make_client):
    client, app = await make_client(max_delay_ms=200, max_batch_size=4)
    calls = spy(app, "ae")

    async def ask(count):
        files = [("file", (f"{i}.png", png_bytes(seed=i), "image/png")) for i in range(count)]
        assert (await client.post("/reconstruct", files=files)).status_code == 200

    await asyncio.gather(ask(3), ask(3))
    assert calls == [(("reconstruct",), 1), (("reconstruct",), 1)]


async def test_full_queue_answers_503_with_retry_after(make_client):
    client, app = await make_client(max_queue=1, concurrent_batches=1)
    gate = ExecutorGate(app)
    waiting = []
    for _ in range(2):  # the first is taken into a batch held at the gate, the second waits
        waiting.append(asyncio.ensure_future(client.post("/generate", json={"n": 1})))
        await asyncio.sleep(0.1)
    r = await client.post("/generate", json={"n": 1})
    assert r.status_code == 503 and r.json()["error"] == "overloaded"
    assert r.headers["retry-after"] == "1"
    gate.release()
    assert [w.status_code for w in await asyncio.gather(*waiting)] == [200, 200]


async def test_deadline_answers_504_and_the_request_never_runs(make_client):
    client, app = await make_client(request_timeout_s=0.2)
    calls = spy(app, "vae")
    gate = ExecutorGate(app)
    r = await client.post("/generate", json={"n": 1})
    assert r.status_code == 504 and r.json()["error"] == "timeout"
    gate.release()
    await asyncio.sleep(0.1)
    assert calls == []
    assert (await client.post("/generate", json={"n": 1})).status_code == 200


async def test_a_client_that_disconnects_is_dropped(make_client):
    _, app = await make_client()
    calls = spy(app, "vae")
    gate = ExecutorGate(app)
    body = b'{"n": 1}'
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    disconnected = asyncio.Event()

    async def receive():
        if messages:
            return messages.pop(0)
        await disconnected.wait()
        return {"type": "http.disconnect"}

    sent = []

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/generate",
        "raw_path": b"/generate",
        "query_string": b"",
        "root_path": "",
        "server": ("test", 80),
        "client": ("test", 1),
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    call = asyncio.ensure_future(app(scope, receive, send))
    await asyncio.sleep(0.1)  # the request is in a batch, held at the gate
    disconnected.set()
    await asyncio.wait_for(call, 5)
    gate.release()
    await asyncio.sleep(0.1)
    assert calls == [] and sent[0]["status"] == 499


async def test_shutdown_answers_what_was_accepted_and_refuses_the_rest(make_client):
    client, app = await make_client()
    gate = ExecutorGate(app)
    accepted = [
        asyncio.ensure_future(client.post("/generate", json={"n": 1, "seed": s})) for s in range(3)
    ]
    await asyncio.sleep(0.1)
    closing = asyncio.ensure_future(app.state.engine.close())
    await asyncio.sleep(0.05)
    r = await client.post("/generate", json={"n": 1})
    assert r.status_code == 503 and r.json()["error"] == "shutting_down"
    assert r.headers["retry-after"] == "1"
    r = await client.get("/readyz")
    assert r.status_code == 503 and r.json()["error"] == "shutting_down"
    assert r.headers["retry-after"] == "1"
    gate.release()
    await closing
    assert [a.status_code for a in await asyncio.gather(*accepted)] == [200, 200, 200]
