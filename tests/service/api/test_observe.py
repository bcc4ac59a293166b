"""service/api/observe.py in the real app: X-Request-ID on every answer, errors included, and
on every log line about the request, the access-log line with its route, status, duration and
the batch it rode in."""

import asyncio
import io
import json
import logging
import re

import pytest

from service.logs import JsonFormatter
from tests.helpers import png_bytes

HEX_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def log_lines():
    """Every line logged during the test, formatted as it is written (JSON)."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(level)


async def _bug(client, app):
    def broken(key, payloads):
        raise RuntimeError("broken")

    app.state.engine.batchers["vae"].predict = broken
    return await client.post("/generate", json={"n": 1})


REQUESTS = {
    "model route": (lambda c, a: c.post("/generate", json={"n": 1}), 200),
    "invalid parameters": (lambda c, a: c.post("/generate", json={"n": 0}), 422),
    "unsupported image": (
        lambda c, a: c.post("/reconstruct", files={"file": ("x.txt", b"text", "text/plain")}),
        415,
    ),
    "unknown route": (lambda c, a: c.get("/nope"), 404),
    "wrong method": (lambda c, a: c.get("/generate"), 405),
    "body over the limit": (lambda c, a: c.post("/generate", content=b"x" * 2048), 413),
    "router route": (lambda c, a: c.get("/models"), 200),
    "probe": (lambda c, a: c.get("/readyz"), 200),
    "metrics": (lambda c, a: c.get("/metrics"), 200),
    "bug": (_bug, 500),
}


@pytest.mark.parametrize("case", REQUESTS)
async def test_every_answer_carries_the_request_id(make_client, case):
    client, app = await make_client(raise_app_exceptions=False, max_upload_bytes=1024)
    call, status = REQUESTS[case]
    client.headers["X-Request-ID"] = "trace-me.42"
    response = await call(client, app)
    assert response.status_code == status, response.text
    assert response.headers["x-request-id"] == "trace-me.42"
    del client.headers["X-Request-ID"]
    first, second = (await call(client, app), await call(client, app))
    assert HEX_ID.fullmatch(first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_an_unauthorised_answer_carries_it_too(make_client):
    client, _ = await make_client(api_key="key")
    response = await client.post("/generate", json={"n": 1}, headers={"X-Request-ID": "who"})
    assert response.status_code == 401 and response.headers["x-request-id"] == "who"


@pytest.mark.parametrize("given", [b"a b", b"x" * 200, "ü".encode(), b"<script>"])
async def test_an_insane_id_is_replaced_not_echoed(make_client, given):
    client, _ = await make_client()
    response = await client.get("/healthz", headers={"X-Request-ID": given})
    assert HEX_ID.fullmatch(response.headers["x-request-id"])


async def test_the_access_log_names_request_route_status_duration_and_batch(make_client, log_lines):
    client, _ = await make_client(max_delay_ms=200)  # the two requests share a forward pass
    calls = [
        client.post("/generate", json={"n": 1, "seed": i}, headers={"X-Request-ID": f"r{i}"})
        for i in range(2)
    ]
    assert [r.status_code for r in await asyncio.gather(*calls)] == [200, 200]
    access = {e["request_id"]: e for e in log_lines() if e["logger"] == "unconv.access"}
    for request_id in ("r0", "r1"):
        entry = access[request_id]
        assert entry["route"] == "/generate" and entry["path"] == "/generate"
        assert entry["method"] == "POST" and entry["status"] == 200
        assert entry["duration_ms"] > 0 and entry["message"] == "POST /generate 200"
        assert re.fullmatch(r"\d+\.\d+", entry["batch"])
    metrics = (await client.get("/metrics")).text
    assert 'unconv_batch_requests_count{model="vae"} 1.0' in metrics  # one batch of the two
    assert access["r0"]["batch"] == access["r1"]["batch"]


async def test_a_bugs_log_line_names_the_request(make_client, log_lines):
    client, app = await make_client(raise_app_exceptions=False)
    client.headers["X-Request-ID"] = "bug-1"
    assert (await _bug(client, app)).status_code == 500
    lines = [e for e in log_lines() if e.get("request_id") == "bug-1"]
    errors = [e for e in lines if e["level"] == "error"]
    assert errors and "RuntimeError: broken" in errors[0]["error"]
    (access,) = [e for e in lines if e["logger"] == "unconv.access"]
    assert access["status"] == 500 and access["route"] == "/generate"


async def test_a_reconstruction_names_its_batch(make_client, log_lines):
    client, _ = await make_client()
    files = {"file": ("x.png", png_bytes(), "image/png")}
    response = await client.post("/reconstruct", files=files, headers={"X-Request-ID": "rec"})
    assert response.status_code == 200
    (access,) = [e for e in log_lines() if e.get("request_id") == "rec"]
    assert access["route"] == "/reconstruct" and re.fullmatch(r"\d+\.\d+", access["batch"])
