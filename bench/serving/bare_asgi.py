"""``python -m bench.serving.bare_asgi [LOAD[:CONCURRENCY] ...] [--requests N] [--repeat R]``:
the floor of HTTP on this machine, for comparison with ``bench.serving.cpu_per_request``.

``app`` is the least an ASGI server can do with the service's requests: read the whole body
and answer a fixed 28x28 PNG, with no routing, form parsing, model or metrics. It runs under
uvicorn as the service does (uvloop, httptools, two worker processes) and wrk sends it the
service's requests; what its processes spend per request is what HTTP itself costs, and
everything the service spends beyond that and beyond its ceiling's work is the service's own.
"""

from __future__ import annotations

import argparse
import statistics

from devkit.images import png_bytes
from devkit.server import running_service

from .cpu_per_request import measure
from .scenarios import requests_to_send
from .wrk import run_wrk

PNG = png_bytes(seed=1)
_HEADERS = [(b"content-type", b"image/png"), (b"content-length", str(len(PNG)).encode())]


async def app(scope, receive, send) -> None:
    if scope["type"] != "http":  # lifespan: nothing to start
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
            await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": PNG})


# under uvicorn as the service runs: uvloop, httptools, two worker processes
UVICORN_ARGS = (
    *("bench.serving.bare_asgi:app", "--port", "{port}", "--workers", "2"),
    *("--log-level", "warning", "--no-access-log", "--loop", "uvloop", "--http", "httptools"),
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("loads", nargs="*", default=["reconstruct_1:64", "visualise_cnn:16"])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    prepared = requests_to_send()
    with running_service({}, module="uvicorn", args=UVICORN_ARGS) as served:
        url, process = served.url, served.process
        for spec in args.loads:
            name, _, concurrency = spec.partition(":")
            request, c = prepared[name], int(concurrency or 64)
            run_wrk(url, request, c, 2)  # warm-up
            rows = [
                measure(url, process.pid, request, c, args.requests) for _ in range(args.repeat)
            ]
            cpu = [r["server_cpu_ms"] for r in rows]
            print(
                f"bare ASGI, {name} c={c} ({len(request.body)} bytes a request): server CPU "
                f"median {statistics.median(cpu):.3f} ms/request (range {min(cpu):.3f}-"
                f"{max(cpu):.3f}), {sum(r['errors'] for r in rows)} errors",
                flush=True,
            )


if __name__ == "__main__":
    main()
