"""service/tracing.py: off without OpenTelemetry's variables (the SDK never imported), the
caller's traceparent continued, and a batch's span linked to every request it served, each
request's trace holding its wait and the batch's phases."""

import subprocess
import sys
import threading
import time

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from service import tracing
from tests.servers import ROOT


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, False),
    ],
)
def test_traces_are_wanted_only_when_an_exporter_is_named(environ, expected):
    assert tracing.wanted(environ) is expected


def test_off_imports_nothing_and_every_hook_does_nothing():
    script = """
import sys
from service import tracing
assert tracing.start({}) is False and not tracing.enabled()
parent = [(b"traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")]
with tracing.route_span("GET /", parent, {}) as span:
    assert span is None and tracing.capture() is None
    tracing.end_route(span, 500)
with tracing.batch_span("batch", [(None, 0.0)], {}), tracing.phase("decode"):
    pass
tracing.stop()
print(sorted(m for m in sys.modules if m.startswith("opentelemetry.sdk")))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.fixture
def exported():
    """Tracing on into memory; ``exported()`` stops it and gives the spans by name."""
    exporter = InMemorySpanExporter()
    assert tracing.start({}, exporter=exporter)

    def spans():
        tracing.stop()
        finished = {}
        for span in exporter.get_finished_spans():
            finished.setdefault(span.name, []).append(span)
        return finished

    yield spans
    tracing.stop()


TRACE_ID, PARENT_ID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"


def test_a_route_span_continues_the_callers_trace(exported):
    traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01".encode()
    headers = [(b"content-type", b"image/png"), (b"traceparent", traceparent)]
    with tracing.route_span("POST /generate", headers, {"http.route": "/generate"}) as span:
        tracing.end_route(span, 503)
    (route,) = exported()["POST /generate"]
    assert f"{route.context.trace_id:032x}" == TRACE_ID
    assert f"{route.parent.span_id:016x}" == PARENT_ID and route.parent.is_remote
    assert route.kind == SpanKind.SERVER and route.status.status_code == StatusCode.ERROR
    assert route.attributes["http.response.status_code"] == 503
    assert route.resource.attributes["service.name"] == "unconv"


def _requests(count: int) -> list[tuple]:
    """``count`` route spans ended, each with what a batcher captures in its task."""
    captured = []
    for i in range(count):
        with tracing.route_span(f"request {i}", [], {}):
            captured.append((tracing.capture(), time.perf_counter()))
    return captured


def test_a_batch_links_every_request_and_each_request_holds_the_phases(exported):
    requests = _requests(3)

    def run_batch():  # in another thread, as the batcher's executor runs it
        with tracing.batch_span("batch vae", requests, {"unconv.batch": "7.1"}):
            for name in ("decode", "forward pass", "encode"):
                with tracing.phase(name):
                    time.sleep(0.001)

    thread = threading.Thread(target=run_batch)
    thread.start()
    thread.join()
    spans = exported()
    (batch,) = spans["batch vae"]
    assert batch.parent is None and batch.attributes["unconv.batch"] == "7.1"
    assert [link.context for link in batch.links] == [origin for origin, _ in requests]
    for name in ("decode", "forward pass", "encode"):
        (child,) = [s for s in spans[name] if s.parent == batch.context]
        mirrors = [s for s in spans[name] if s.parent != batch.context]
        assert sorted(s.parent.span_id for s in mirrors) == sorted(o.span_id for o, _ in requests)
        for mirror in mirrors:
            assert mirror.context.trace_id == mirror.parent.trace_id
            assert (mirror.start_time, mirror.end_time) == (child.start_time, child.end_time)
            assert [link.context for link in mirror.links] == [batch.context]
    waits = {s.parent.span_id: s for s in spans["queue wait"]}
    assert set(waits) == {origin.span_id for origin, _ in requests}
    for (origin, _), request in zip(requests, spans_in_order(spans, 3), strict=True):
        wait = waits[origin.span_id]
        assert request.start_time <= wait.start_time <= wait.end_time == batch.start_time


def spans_in_order(spans, count):
    return [spans[f"request {i}"][0] for i in range(count)]
