"""Traces: OpenTelemetry, configured by its standard environment variables, and off at no cost
when none asks for it.

``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, or
``OTEL_TRACES_EXPORTER``) turns tracing on; the SDK reads the rest itself: the service's name
and resource (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``), the sampler
(``OTEL_TRACES_SAMPLER``, ``OTEL_TRACES_SAMPLER_ARG``), the exporter's headers and timeout, the
batch processor's limits. ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none`` keeps it
off. Off, the SDK is never imported and each hook below is one test of a module variable.

A request's trace: its route's server span (continuing the caller's W3C ``traceparent``) with
children for its wait in the queue and for the decoding, forward pass and encoding of the batch
it rode in. The batch is one span of its own, linked to every request it served, as the
OpenTelemetry specification describes for batches; the request's phase spans link back to it.
The provider is this process's own, not the global one: each worker process starts its own
after the fork, and nothing else in the process (FastAPI's own telemetry) starts tracing
because of it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, SpanContext, Tracer

_ENABLING = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_EXPORTER",
)
SERVICE_NAME = "unconv"  # unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES name it

_tracer: Tracer | None = None
_provider = None
_NOTHING = nullcontext()


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the OpenTelemetry variables in ``environ`` ask for traces."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(environ.get(name, "").strip() for name in _ENABLING)


def enabled() -> bool:
    """Whether this process traces."""
    return _tracer is not None


def start(environ: Mapping[str, str] = os.environ, exporter: SpanExporter | None = None) -> bool:
    """
    Start tracing in this process if ``environ`` asks for it (each worker process calls it
    after the fork: the batch processor's thread does not survive one).

    Parameters
    ----------
    environ : mapping
        The OpenTelemetry variables (the process's environment).
    exporter : SpanExporter, optional
        Where spans go instead of what ``OTEL_TRACES_EXPORTER`` says (``otlp``, over
        HTTP/protobuf, by default; ``console`` prints them).

    Returns whether this process now traces.
    """
    global _tracer, _provider
    if exporter is None and not wanted(environ):
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"process.pid": os.getpid()})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    _provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    _provider.add_span_processor(BatchSpanProcessor(exporter or _exporter(environ)))
    _tracer = _provider.get_tracer("unconv")
    return True


def _exporter(environ: Mapping[str, str]) -> SpanExporter:
    name = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER is otlp, console or none, not {name!r}")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def stop() -> None:
    """Send the spans still held and stop tracing in this process."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None


def route_span(
    name: str, headers: Sequence[tuple[bytes, bytes]], attributes: Mapping[str, Any]
) -> AbstractContextManager[Span | None]:
    """The server span of one request, current in the block (None when off): a child of
    the caller's span when its ``traceparent`` header names one."""
    if _tracer is None:
        return _NOTHING
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    carrier = {
        key.decode("latin-1"): value.decode("latin-1")
        for key, value in headers
        if key in (b"traceparent", b"tracestate")
    }
    return _tracer.start_as_current_span(
        name, context=propagate.extract(carrier), kind=SpanKind.SERVER, attributes=attributes
    )


def end_route(span: Span | None, status: int) -> None:
    """Record the answer's status on a route span; a 5xx marks it failed."""
    if span is None:
        return
    from opentelemetry.trace import StatusCode

    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(StatusCode.ERROR)


def capture() -> SpanContext | None:
    """The calling task's current span (a request's route span), to link a batch to; None
    when off or outside any span."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return context if context.is_valid else None


@dataclass
class _Batch:
    span: Span
    phases: list[tuple[str, int, int]] = field(default_factory=list)  # (name, start, end) ns


_batch: ContextVar[_Batch | None] = ContextVar("unconv_batch", default=None)


@contextmanager
def batch_span(
    name: str, requests: Sequence[tuple[SpanContext | None, float]], attributes: Mapping
) -> Iterator[None]:
    """
    One batch's span, current in the block, in the thread that runs the batch.

    Parameters
    ----------
    name : str
        The span's name (the model's batch).
    requests : sequence of (SpanContext or None, float)
        Each request's route span (``capture()`` in its task) and when it was queued
        (``time.perf_counter()``): the batch links to each, and each gets spans for its
        wait and for the batch's phases (``phase``).
    attributes : mapping
        The batch's attributes (its ID, items, requests).
    """
    if _tracer is None:
        yield
        return
    from opentelemetry.context import Context
    from opentelemetry.trace import Link

    links = [Link(origin) for origin, _ in requests if origin is not None]
    with _tracer.start_as_current_span(
        name, context=Context(), links=links, attributes=attributes
    ) as span:
        batch = _Batch(span)
        token = _batch.set(batch)
        try:
            yield
        finally:
            _batch.reset(token)
    _mirror(batch, requests, attributes)


@contextmanager
def _phase(batch: _Batch, name: str) -> Iterator[None]:
    start = time.time_ns()
    with _tracer.start_as_current_span(name, start_time=start, end_on_exit=False) as span:
        try:
            yield
        finally:
            end = time.time_ns()
            span.end(end)
            batch.phases.append((name, start, end))


def phase(name: str) -> AbstractContextManager[None]:
    """A phase of the current batch (decode, forward pass, encode): a child of its span, and
    a span of the same times in the trace of each request it serves."""
    batch = _batch.get() if _tracer is not None else None
    return _NOTHING if batch is None else _phase(batch, name)


def _mirror(batch: _Batch, requests: Sequence, attributes: Mapping) -> None:
    """Each request's spans for its wait in the queue and the batch's phases."""
    from opentelemetry.trace import Link, NonRecordingSpan, set_span_in_context

    to_ns = time.time_ns() - time.perf_counter() * 1e9  # perf_counter's time, as time_ns
    started = batch.span.start_time
    link = [Link(batch.span.get_span_context())]
    for origin, queued in requests:
        if origin is None:
            continue
        parent = set_span_in_context(NonRecordingSpan(origin))
        queued_ns = min(int(queued * 1e9 + to_ns), started)
        wait = _tracer.start_span("queue wait", parent, start_time=queued_ns)
        wait.end(started)
        for name, start, end in batch.phases:
            span = _tracer.start_span(name, parent, links=link, start_time=start)
            span.set_attributes(attributes)
            span.end(end)
