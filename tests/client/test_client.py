"""The client's own behaviour, against a recording transport: the URL and key it sends,
retries of a 503, its errors, its answers without the extras, and its version."""

from __future__ import annotations

import itertools
import sys
import time
import tomllib

import httpx
import pytest
import unconv_client
from unconv_client import AsyncUnconvClient, NpyBytes, PngBytes, UnconvClient, UnconvError

from tests.helpers import png_bytes
from tests.servers import ROOT


def _client(answers, cls=UnconvClient, transport=httpx.MockTransport, **options):
    """A client whose requests are recorded and answered by ``answers`` in turn."""
    requests = []

    def answer(request):
        requests.append((time.monotonic(), request))
        return answers.pop(0)

    http = (httpx.Client if cls is UnconvClient else httpx.AsyncClient)(
        transport=transport(answer), base_url=options.pop("base_url", "http://unconv.test")
    )
    return cls(http=http, **options), requests


def _overloaded(retry_after="0.2"):
    headers = {"Retry-After": retry_after} if retry_after else {}
    return httpx.Response(503, json={"error": "overloaded", "detail": "busy"}, headers=headers)


def test_a_path_prefix_and_the_api_key_go_with_every_request():
    client, requests = _client(
        [httpx.Response(200, json={"models": []})],
        base_url="http://proxy.test/unconv",
        api_key="secret",
    )
    assert client.models() == []
    (_, request), *_ = requests
    assert str(request.url) == "http://proxy.test/unconv/models"
    assert request.headers["X-API-Key"] == "secret"


def test_the_service_defaults_are_the_only_defaults():
    client, requests = _client([httpx.Response(200, json={}) for _ in range(2)])
    client.generate()
    client.reconstruct(b"png")
    assert requests[0][1].content == b"{}"
    assert b'name="model"' not in requests[1][1].content
    assert b'name="format"' not in requests[1][1].content


def test_a_503_is_not_retried_by_default():
    client, requests = _client([_overloaded()])
    with pytest.raises(UnconvError) as info:
        client.generate()
    assert (info.value.status, info.value.code, info.value.detail) == (503, "overloaded", "busy")
    assert info.value.retry_after == 0.2 and len(requests) == 1


def test_retries_wait_the_retry_after_of_each_503():
    answers = [_overloaded(), _overloaded(), httpx.Response(200, json={"n": 1})]
    client, requests = _client(answers, retries=2)
    assert client.generate() == {"n": 1}
    times = [at for at, _ in requests]
    assert len(times) == 3 and all(b - a >= 0.2 for a, b in itertools.pairwise(times))


def test_retries_run_out_and_raise_the_last_503():
    client, requests = _client([_overloaded("0"), _overloaded("0")], retries=1)
    with pytest.raises(UnconvError, match="503 overloaded"):
        client.generate()
    assert len(requests) == 2


async def test_the_async_client_retries_too():
    client, requests = _client(
        [_overloaded("0.1"), httpx.Response(200, json={"models": [{"name": "vae"}]})],
        cls=AsyncUnconvClient,
        retries=3,
    )
    async with client:
        assert await client.models() == [{"name": "vae"}]
    assert len(requests) == 2 and requests[1][0] - requests[0][0] >= 0.1


def test_an_answer_that_is_not_the_services_json_error_keeps_its_status():
    client, _ = _client([httpx.Response(502, text="Bad Gateway")])
    with pytest.raises(UnconvError) as info:
        client.models()
    assert (info.value.status, info.value.code, info.value.detail) == (
        502,
        "http_502",
        "Bad Gateway",
    )
    assert info.value.retry_after is None


def test_without_pillow_and_numpy_answers_are_bytes_that_name_the_extra(monkeypatch, tmp_path):
    image = png_bytes()
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL raises ImportError
    monkeypatch.setitem(sys.modules, "numpy", None)
    client, _ = _client(
        [
            httpx.Response(200, content=image, headers={"content-type": "image/png"}),
            httpx.Response(
                200, content=b"\x93NUMPY", headers={"content-type": "application/x-npy"}
            ),
        ]
    )
    png = client.generate()
    assert type(png) is PngBytes and png == image and "unconv-client[pillow]" in repr(png)
    png.save(tmp_path / "out.png")
    assert (tmp_path / "out.png").read_bytes() == image
    array = client.generate(format="npy")
    assert type(array) is NpyBytes and "unconv-client[numpy]" in repr(array)


def test_the_client_version_is_the_services():
    service = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    client = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]
    assert client["dynamic"] == ["version"]  # from unconv_client.__version__
    assert unconv_client.__version__ == service
