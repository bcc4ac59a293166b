"""A real OTLP/HTTP receiver for the tests: takes ``POST /v1/traces`` as a collector does and
decodes each body with OpenTelemetry's own protobuf messages (PyPI ``opentelemetry-proto``)."""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

_DECOMPRESS = {"gzip": gzip.decompress, "deflate": zlib.decompress, "": lambda body: body}


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as it arrived: hexadecimal IDs, its attributes and its resource's."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict
    links: tuple[tuple[str, str], ...]  # (trace_id, span_id) of each
    resource: dict


def _value(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def _attributes(key_values) -> dict:
    return {kv.key: _value(kv.value) for kv in key_values}


def _spans(request: ExportTraceServiceRequest) -> Iterator[ReceivedSpan]:
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield ReceivedSpan(
                    name=span.name,
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex(),
                    kind=span.kind,
                    start_ns=span.start_time_unix_nano,
                    end_ns=span.end_time_unix_nano,
                    attributes=_attributes(span.attributes),
                    links=tuple((link.trace_id.hex(), link.span_id.hex()) for link in span.links),
                    resource=resource,
                )


class Receiver:
    """What arrived so far (``spans``), and the requests that were not OTLP (``refused``)."""

    def __init__(self):
        self.spans: list[ReceivedSpan] = []
        self.refused: list[str] = []
        self.lock = threading.Lock()

    def take(self, path: str, content_type: str, encoding: str, body: bytes) -> int:
        if path != "/v1/traces" or content_type != "application/x-protobuf":
            self.refused.append(f"{path} {content_type}")
            return 415
        request = ExportTraceServiceRequest.FromString(_DECOMPRESS[encoding](body))
        with self.lock:
            self.spans.extend(_spans(request))
        return 200


@contextmanager
def otlp_receiver() -> Iterator[tuple[str, Receiver]]:
    """An OTLP/HTTP receiver on a free loopback port: yields (endpoint, receiver), the
    endpoint as ``OTEL_EXPORTER_OTLP_ENDPOINT`` takes it."""
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            status = receiver.take(
                self.path,
                self.headers.get("content-type", ""),
                self.headers.get("content-encoding", ""),
                body,
            )
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(status)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", receiver
    finally:
        server.shutdown()
        server.server_close()
