"""The bare ASGI app that gives HTTP's floor in the benchmark reads every request whole before
it answers, and answers the fixed PNG."""

import asyncio
import io

from PIL import Image

from bench.serving.bare_asgi import PNG, app


def test_the_bare_app_reads_the_whole_body_then_answers_its_png():
    chunks = [b"a" * 1000, b"b" * 1000, b"c" * 10]
    received, events = [], []

    async def receive():
        chunk = chunks[len(received)]
        received.append(chunk)
        events.append("receive")
        return {"type": "http.request", "body": chunk, "more_body": len(received) < len(chunks)}

    async def send(message):
        events.append(message)

    asyncio.run(app({"type": "http", "method": "POST", "path": "/reconstruct"}, receive, send))

    assert events[:3] == ["receive"] * 3  # the body first, all of it
    start, body = events[3:]
    headers = dict(start["headers"])
    assert start["status"] == 200 and headers[b"content-type"] == b"image/png"
    assert int(headers[b"content-length"]) == len(body["body"]) == len(PNG)
    assert Image.open(io.BytesIO(body["body"])).size == (28, 28)
