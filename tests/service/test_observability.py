"""``python -m service`` with two worker processes, observed from outside: its JSON log lines
(``UNCONV_LOG_FORMAT=json``) name each request and hold nothing of what it sent, and its
traces, received by a real OTLP/HTTP receiver (tests/otlp.py), continue the caller's
``traceparent`` and link each batch to every request it served."""

from __future__ import annotations

import base64
import io
import json
import secrets
from concurrent.futures import ThreadPoolExecutor

import httpx
from PIL import Image, PngImagePlugin

from tests.otlp import otlp_receiver
from tests.servers import child_processes, running_service, served_checkpoints, stopped

API_KEY = f"key-{secrets.token_hex(16)}"


def _marked_png(marker: str) -> bytes:
    """A digit-sized PNG that carries ``marker`` in a text chunk: were the body logged, the
    marker would be in the log."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", marker)
    out = io.BytesIO()
    Image.new("L", (28, 28), 128).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def _reconstruct(url: str, request_id: str, image: bytes, key: str = API_KEY, **headers):
    response = httpx.post(
        f"{url}/reconstruct",
        files={"file": ("digit.png", image, "image/png")},
        headers={"X-API-Key": key, "X-Request-ID": request_id, **headers},
        timeout=60,
    )
    assert response.headers["x-request-id"] == request_id
    return response


def test_json_logs_name_each_request_and_hold_nothing_it_sent(checkpoint_dir, tmp_path):
    checkpoints = served_checkpoints(checkpoint_dir, tmp_path / "checkpoints")
    marker = f"marker-{secrets.token_hex(16)}"
    image = _marked_png(marker)
    log = tmp_path / "server.log"
    env = {"UNCONV_WORKERS": "2", "UNCONV_LOG_FORMAT": "json", "UNCONV_API_KEY": API_KEY}
    with running_service(checkpoints, log, **env) as (server, url):
        workers = sorted(child_processes(server.pid))
        for i, worker in enumerate(workers):
            with stopped(workers[1 - i]):  # the other one takes the connections
                assert _reconstruct(url, f"ok-{worker}", image).status_code == 200
                assert _reconstruct(url, f"nokey-{worker}", image, "wrong").status_code == 401
        bad = httpx.post(f"{url}/generate", json={"n": marker}, headers={"X-API-Key": API_KEY})
        assert bad.status_code == 422
    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    for secret in (API_KEY, marker, base64.b64encode(image).decode()[:40]):
        assert secret not in text
    access = {e["request_id"]: e for e in lines if e["logger"] == "unconv.access"}
    for worker in workers:
        ok, refused = access[f"ok-{worker}"], access[f"nokey-{worker}"]
        assert (ok["worker"], ok["status"], ok["route"]) == (worker, 200, "/reconstruct")
        assert ok["batch"].startswith(f"{worker}.") and ok["duration_ms"] > 0
        assert (refused["worker"], refused["status"]) == (worker, 401)
        assert "batch" not in refused  # refused before it reached a batch
    for entry in lines:
        assert {"time", "level", "logger", "worker", "message"} <= set(entry)
    assert {e["worker"] for e in lines} >= {server.pid, *workers}  # the supervisor's too


def _traceparent() -> tuple[str, str, str]:
    """(header, trace ID, parent span ID) of a new sampled W3C trace context."""
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{parent}-01", trace_id, parent


def _send_traced(url: str, count: int) -> dict[str, tuple[str, str]]:
    """``count`` concurrent /reconstruct requests, each in a trace of its own; request ID ->
    (trace ID, parent span ID)."""
    sent = {}

    def one(i: int) -> None:
        header, trace_id, parent = _traceparent()
        request_id = f"traced-{trace_id[:8]}-{i}"
        image = _marked_png(str(i))
        response = _reconstruct(url, request_id, image, traceparent=header)
        assert response.status_code == 200, response.text
        sent[request_id] = (trace_id, parent)

    with ThreadPoolExecutor(count) as pool:
        list(pool.map(one, range(count)))
    return sent


def test_traces_continue_the_caller_and_link_each_batch_to_its_requests(checkpoint_dir, tmp_path):
    checkpoints = served_checkpoints(checkpoint_dir, tmp_path / "checkpoints")
    with otlp_receiver() as (endpoint, receiver):
        env = {
            "UNCONV_WORKERS": "2",
            "UNCONV_API_KEY": API_KEY,
            "UNCONV_MAX_DELAY_MS": "1000",  # the concurrent requests share a batch
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_SERVICE_NAME": "unconv-under-test",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        with running_service(checkpoints, tmp_path / "server.log", **env) as (server, url):
            workers = sorted(child_processes(server.pid))
            sent = {}
            for i in range(2):
                with stopped(workers[1 - i]):
                    sent |= _send_traced(url, 3)
        # stopped: each worker sent what it held as it shut down
        spans = list(receiver.spans)
    assert receiver.refused == []
    _check_traces(spans, sent, workers)


def _check_traces(spans, sent: dict, workers: list[int]) -> None:
    routes = {s.attributes["unconv.request_id"]: s for s in spans if s.name.startswith("POST ")}
    batches = [s for s in spans if s.name.startswith("batch ")]
    assert {s.resource["process.pid"] for s in spans} == set(workers)
    assert {s.resource["service.name"] for s in spans} == {"unconv-under-test"}
    for request_id, (trace_id, parent) in sent.items():
        route = routes[request_id]
        assert (route.name, route.trace_id, route.parent_span_id) == (
            "POST /reconstruct", trace_id, parent,
        )  # fmt: skip
        assert route.kind == 2  # SERVER
        assert route.attributes["http.response.status_code"] == 200
        children = {s.name: s for s in spans if s.parent_span_id == route.span_id}
        assert set(children) == {"queue wait", "decode", "forward pass", "encode"}
        (batch,) = [b for b in batches if (trace_id, route.span_id) in b.links]
        for name in ("decode", "forward pass", "encode"):
            child = children[name]
            assert child.trace_id == trace_id and child.links == ((batch.trace_id, batch.span_id),)
            assert route.start_ns <= child.start_ns <= child.end_ns <= route.end_ns
            (own,) = [s for s in spans if s.parent_span_id == batch.span_id and s.name == name]
            assert (own.start_ns, own.end_ns) == (child.start_ns, child.end_ns)
        assert children["queue wait"].end_ns == batch.start_ns
        assert batch.parent_span_id == "" and batch.resource == route.resource
    assert max(len(b.links) for b in batches) > 1  # requests did share a batch
