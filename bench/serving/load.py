"""A bounded async load generator: ``concurrency`` workers send prepared requests until a count
or a time limit is reached, and record latency and errors."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Prepared:
    """One request, encoded once so that the generator spends its time sending."""

    method: str
    path: str
    body: bytes
    content_type: str
    images: int = 1  # images in the answer, for images/s

    @classmethod
    def multipart(
        cls,
        path: str,
        files: list[bytes],
        fields: dict[str, str],
        images: int | None = None,
        jpeg: bool = False,
    ) -> Prepared:
        kind = "jpeg" if jpeg else "png"
        boundary = uuid.uuid4().hex
        parts = []
        for name, value in fields.items():
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'
                f"\r\n\r\n{value}\r\n".encode()
            )
        for i, data in enumerate(files):
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="{i}.{kind}"\r\nContent-Type: image/{kind}\r\n\r\n'.encode()
                + data
                + b"\r\n"
            )
        parts.append(f"--{boundary}--\r\n".encode())
        return cls(
            "POST",
            path,
            b"".join(parts),
            f"multipart/form-data; boundary={boundary}",
            images if images is not None else len(files),
        )

    @classmethod
    def json(cls, path: str, body: str, images: int) -> Prepared:
        return cls("POST", path, body.encode(), "application/json", images)


@dataclass
class LoadResult:
    concurrency: int
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    images: int
    probes: tuple[Any, Any] = (None, None)

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds

    def percentile(self, q: float) -> float:
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else float("nan")
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(q) - 1]

    def summary(self) -> dict:
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "requests_per_s": round(self.requests_per_s, 1),
            "images_per_s": round(self.images_per_s, 1),
            "p50_ms": round(self.percentile(50), 2),
            "p95_ms": round(self.percentile(95), 2),
            "p99_ms": round(self.percentile(99), 2),
        }


class _ClosedLoop:
    """Workers that each send the prebuilt request on their own client, back to back, until
    ``max_requests`` are sent or the deadline passes; latencies in ms and errors counted."""

    def __init__(self, clients: list[httpx.AsyncClient], request: Prepared, max_requests: int):
        headers = {"content-type": request.content_type}
        self.prebuilt = {
            c: c.build_request(request.method, request.path, content=request.body, headers=headers)
            for c in clients
        }
        self.max_requests = max_requests
        self.latencies: list[float] = []
        self.errors = self.sent = 0

    async def send(self, client: httpx.AsyncClient) -> tuple[float, bool]:
        started = time.perf_counter()
        response = await client.send(self.prebuilt[client])
        return (time.perf_counter() - started) * 1000, response.status_code == 200

    async def worker(self, client: httpx.AsyncClient, deadline: float) -> None:
        while self.sent < self.max_requests and time.perf_counter() < deadline:
            self.sent += 1
            try:
                latency, ok = await self.send(client)
            except httpx.HTTPError:
                self.errors += 1
                continue
            self.latencies.append(latency)
            self.errors += not ok


async def run_load(
    url: str,
    request: Prepared,
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    warmup: int = 20,
    probe: Callable[[], Any] | None = None,
) -> LoadResult:
    """Send ``request`` with ``concurrency`` workers until ``max_requests`` or ``max_seconds``.

    Every worker has its own single-connection client: one shared pool of many connections
    costs httpx more CPU than the service spends on a small request. ``probe`` is called just
    before and just after the measured window (after warm-up, before the clients close); the
    result holds both answers.
    """
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [  # plain http on loopback: no TLS context to build per client
        httpx.AsyncClient(base_url=url, limits=limits, timeout=60, verify=False)
        for _ in range(concurrency)
    ]
    loop = _ClosedLoop(clients, request, max_requests)
    try:
        await asyncio.gather(*(loop.send(c) for c in clients[: max(1, min(warmup, concurrency))]))
        before = probe() if probe else None
        started = time.perf_counter()
        await asyncio.gather(*(loop.worker(c, started + max_seconds) for c in clients))
        seconds = time.perf_counter() - started
        after = probe() if probe else None
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    done = len(loop.latencies)
    return LoadResult(
        concurrency,
        done,
        loop.errors,
        seconds,
        loop.latencies,
        done * request.images,
        (before, after),
    )
