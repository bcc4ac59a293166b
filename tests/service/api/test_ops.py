"""Health, readiness, models, metrics, auth, CORS, limits and error shapes."""

import struct
import zlib

import pytest

from service.settings import Settings
from tests.helpers import ExecutorGate, png_bytes


async def test_health_and_readiness(make_client):
    client, app = await make_client(wait=False, networks=["alexnet"])
    gate = ExecutorGate(app)  # holds model loading
    assert (await client.get("/healthz")).json() == {
        "status": "ok",
        "models_loaded": None,
        "models_unavailable": None,
    }
    for path, code in (("/readyz", "error"), ("/v2/health/ready", "code")):  # v2's own form
        r = await client.get(path)
        assert r.status_code == 503 and r.json()[code] == "not_ready"
        assert r.headers["retry-after"] == "2"
    r = await client.post("/generate", json={})
    assert r.status_code == 503 and r.json()["error"] == "not_ready"
    assert r.headers["retry-after"] == "2"
    listed = {m["name"]: m for m in (await client.get("/models")).json()["models"]}
    assert not listed["vae"]["available"] and listed["vae"]["reason"] == "still loading"
    gate.release()
    await app.state.engine.wait_ready()
    r = await client.get("/readyz")
    assert r.status_code == 200 and r.json()["models_loaded"] == 4
    assert r.json()["models_unavailable"] == 1
    assert (await client.get("/v2/health/live")).status_code == 200


async def test_models_lists_everything_and_explains_the_unavailable(make_client):
    client, _ = await make_client(networks=["alexnet", "vgg16", "resnet"])
    models = {m["name"]: m for m in (await client.get("/models")).json()["models"]}
    assert set(models) == {"alexnet", "vgg16", "resnet", "ae", "vae", "cnn", "broken"}
    assert models["vae"]["kind"] == "vae" and models["vae"]["latent_size"] == 6
    assert models["vae"]["endpoints"] == ["reconstruct", "generate"]
    assert models["vae"]["input_shape"] == [1, 28, 28]
    assert models["vae"]["metadata"]["metrics"] == {"score": 1.0}
    assert models["alexnet"]["available"] and len(models["alexnet"]["layers"]) == 13
    assert models["cnn"]["layers"][0].startswith("1: Conv2d(1, 4")
    assert not models["vgg16"]["available"] and "UNCONV_ALLOW_DOWNLOAD" in models["vgg16"]["reason"]
    assert "unknown torchvision network 'resnet'" in models["resnet"]["reason"]
    assert not models["broken"]["available"] and models["broken"]["kind"] == "unknown"


async def test_metrics_count_requests_and_batches(make_client):
    client, _ = await make_client()
    await client.post("/generate", json={"n": 3, "seed": 0})
    await client.post("/generate", json={"n": 0})
    text = (await client.get("/metrics")).text
    assert 'unconv_requests_total{method="POST",route="/generate",status="200"} 1.0' in text
    assert 'unconv_requests_total{method="POST",route="/generate",status="422"} 1.0' in text
    assert 'unconv_batch_size_bucket{le="4.0",model="vae"} 1.0' in text
    assert 'unconv_queue_wait_seconds_count{model="vae"} 1.0' in text
    assert 'unconv_inference_seconds_count{model="vae"} 1.0' in text
    assert 'unconv_queue_depth{model="vae"} 0.0' in text


async def test_unconv_ready_says_what_readyz_answers(make_client):
    """1 while /readyz answers 200; 0 while another worker still loads (its flag is 0)."""
    client, app = await make_client()
    for flags, status, ready in (([1, 0], 503, "0.0"), ([1, 1], 200, "1.0")):
        app.state.engine.peers.ready = flags
        assert (await client.get("/readyz")).status_code == status
        lines = (await client.get("/metrics")).text.splitlines()
        assert f"unconv_ready {ready}" in lines


async def test_api_key_guards_everything_but_health(make_client):
    client, _ = await make_client(api_key="s3cret")
    r = await client.get("/models")
    assert r.status_code == 401 and r.json() == {
        "error": "unauthorized",
        "detail": "missing or wrong X-API-Key header",
    }
    assert (await client.get("/models", headers={"X-API-Key": "wrong"})).status_code == 401
    assert (await client.get("/models", headers={"X-API-Key": "s3cret"})).status_code == 200
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await client.get(path)).status_code == 200


async def test_the_docs_ask_for_a_key_only_when_one_is_set(make_client):
    for key, expected in ((None, None), ("s3cret", [{"APIKeyHeader": []}])):
        client, _ = await make_client(api_key=key)
        schema = (await client.get("/openapi.json")).json()
        assert schema["paths"]["/reconstruct"]["post"].get("security") == expected
        assert schema["paths"]["/healthz"]["get"].get("security") is None


async def test_cors_allows_configured_origins(make_client):
    client, _ = await make_client(cors_origins=["https://app.example"])
    r = await client.options(
        "/generate",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    r = await client.options(
        "/generate",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in r.headers


def test_settings_read_comma_separated_lists(monkeypatch):
    monkeypatch.setenv("UNCONV_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("UNCONV_NETWORKS", "alexnet")
    settings = Settings()
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.networks == ["alexnet"]


async def test_upload_over_the_limit_is_413(make_client):
    client, _ = await make_client(max_upload_bytes=2048)
    big = png_bytes((64, 64), "RGB")
    r = await client.post("/reconstruct", files={"file": ("x.png", big, "image/png")})
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
    assert "UNCONV_MAX_UPLOAD_BYTES=2048" in r.json()["detail"]

    async def chunks():  # no Content-Length: the limit is enforced while streaming
        for _ in range(10):
            yield b"x" * 1000

    r = await client.post(
        "/generate", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge image: a decompression bomb."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("size", [(2000, 2000), (60000, 60000)], ids=["over-setting", "bomb"])
async def test_too_many_pixels_are_refused_before_decoding(make_client, size):
    client, _ = await make_client(max_image_pixels=1_000_000)
    r = await client.post(
        "/reconstruct", files={"file": ("b.png", _png_claiming(*size), "image/png")}
    )
    assert r.status_code == 413 and r.json()["error"] == "image_too_large"


async def test_too_many_files_is_413(make_client):
    client, _ = await make_client(max_files=2)
    files = [("file", (f"{i}.png", png_bytes(), "image/png")) for i in range(3)]
    r = await client.post("/reconstruct", files=files)
    assert r.status_code == 413 and "UNCONV_MAX_FILES=2" in r.json()["detail"]


async def test_unknown_route_and_method_are_json(make_client):
    client, _ = await make_client()
    r = await client.get("/nope")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = await client.get("/generate")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"


async def test_a_bug_is_a_generic_500_without_traceback(make_client):
    client, app = await make_client(raise_app_exceptions=False)

    def broken(key, payloads):
        raise RuntimeError("secret internals")

    app.state.engine.batchers["vae"].predict = broken
    r = await client.post("/generate", json={"n": 1})
    assert r.status_code == 500 and r.json()["error"] == "internal_error"
    assert "secret" not in r.text


async def test_openapi_documents_parameters_and_errors(make_client):
    client, _ = await make_client()
    spec = (await client.get("/openapi.json")).json()
    post = spec["paths"]["/visualise"]["post"]
    assert {"413", "415", "422", "503", "504"} <= set(post["responses"])
    assert "image/png" in post["responses"]["200"]["content"]
    form = post["requestBody"]["content"]["multipart/form-data"]["schema"]
    fields = {"file", "layer", "network", "k", "channel", "method", "format"}
    assert fields == set(form["properties"])
    assert {"file", "layer"} == set(form["required"])
    assert form["properties"]["file"]["format"] == "binary"
    assert form["properties"]["format"]["anyOf"][0]["enum"] == ["png", "json", "npy"]
    reconstruct = spec["paths"]["/reconstruct"]["post"]["requestBody"]["content"]
    files = reconstruct["multipart/form-data"]["schema"]["properties"]["file"]
    assert files["type"] == "array" and files["items"]["format"] == "binary"
    assert (await client.get("/docs")).status_code == 200


def test_uvicorn_import_string_builds_the_app():
    from service.api import app

    paths = set(app.openapi()["paths"])
    assert {"/visualise", "/reconstruct", "/generate", "/models", "/healthz", "/readyz"} <= paths


@pytest.mark.parametrize("key", [None, "k"])
async def test_the_model_routes_keep_limits_metrics_and_errors(make_client, key):
    """The model routes are served by dispatch.ModelRoutes, with a key set or not: the key, the
    streamed body limit, the route's metrics, 405 for another method and the generic 500 hold
    for them."""
    client, app = await make_client(max_upload_bytes=2048, api_key=key)
    if key is not None:
        r = await client.post("/reconstruct", files={"file": ("x.png", png_bytes(), "image/png")})
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        assert r.headers["www-authenticate"] == "ApiKey"
        r = await client.post("/generate", json={}, headers={"X-API-Key": "wrong"})
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        client.headers["X-API-Key"] = key

    async def chunks():  # no Content-Length: the limit is enforced while streaming
        for _ in range(10):
            yield b"x" * 1000

    kind = {"content-type": "multipart/form-data; boundary=b"}
    r = await client.post("/reconstruct", content=chunks(), headers=kind)
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
    r = await client.post("/visualise", files={"file": ("x.png", png_bytes(), "image/png")})
    assert r.status_code == 422 and r.json()["error"] == "invalid_parameters"
    assert (await client.get("/reconstruct")).status_code == 405
    r = await client.post("/reconstruct", files={"file": ("x.png", png_bytes(), "image/png")})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"

    def broken(key, payloads):
        raise RuntimeError("secret internals")

    app.state.engine.batchers["ae"].predict = broken
    with pytest.raises(RuntimeError, match="secret internals"):  # as the router re-raises
        await client.post("/reconstruct", files={"file": ("x.png", png_bytes(), "image/png")})
    text = (await client.get("/metrics")).text
    for route, status in (("/reconstruct", 413), ("/visualise", 422), ("/reconstruct", 200)):
        line = f'unconv_requests_total{{method="POST",route="{route}",status="{status}"}} 1.0'
        assert line in text
    assert 'unconv_requests_total{method="POST",route="/reconstruct",status="500"} 1.0' in text


_JSON = {"content-type": "application/json"}
# a body of /generate, its headers, and the status and the start of the detail it is answered
_GENERATE_BODIES = [
    ('{"n": 2, "seed": 1, "format": "json"}', _JSON, 200, None),
    ('{"n": 2, "seed": 1}', {"content-type": "application/json; charset=utf-8"}, 200, None),
    ('{"n": 2, "seed": 1}', {"content-type": "application/vnd.unconv+json"}, 200, None),
    ('{"n": 3, "seed": 5, "label": 7}', _JSON, 422, "model 'vae' has no labels"),
    ('{"n": 2, "seed": 1}', {}, 422, "body: expected application/json, not a body without"),
    ('{"n": 2}', {"content-type": "text/plain"}, 422, "body: expected application/json, not t"),
    ('{"n": 0}', _JSON, 422, "n: Input should be greater than or equal to 1"),
    ('{"n": 2, "colour": 1}', _JSON, 422, "colour: Extra inputs are not permitted"),
    ('{"n": 2,', _JSON, 422, "body: Invalid JSON"),
    ("[1, 2]", _JSON, 422, "body: Input should be an object"),
    ("null", _JSON, 422, "body: Input should be an object"),
    ("", _JSON, 422, "body: Field required"),
    (b"\xff\xfe{", _JSON, 422, "body: Invalid JSON"),
    ("[" * 100_000, _JSON, 422, "body: Invalid JSON: recursion limit"),
]


@pytest.mark.parametrize("key", [None, "k"])
async def test_generate_reads_its_json_body_once_with_a_key_or_without(make_client, key):
    """/generate reads and validates its JSON body itself (dispatch.read_json), on the one path
    the model routes take in every configuration."""
    client, _ = await make_client(api_key=key)
    key_header = {} if key is None else {"X-API-Key": key}
    for body, headers, status, detail in _GENERATE_BODIES:
        r = await client.post("/generate", content=body, headers=headers | key_header)
        assert r.status_code == status, (body, r.text)
        if detail is not None:
            assert r.json()["error"] == "invalid_parameters", body
            assert r.json()["detail"].startswith(detail), (body, r.json())
    text = (await client.get("/metrics")).text
    for status, count in ((200, 3), (422, len(_GENERATE_BODIES) - 3)):
        line = (
            f'unconv_requests_total{{method="POST",route="/generate",status="{status}"}} {count}.0'
        )
        assert line in text


async def test_a_bug_in_a_directly_served_route_is_a_generic_500(make_client):
    client, app = await make_client(raise_app_exceptions=False)

    def broken(key, payloads):
        raise RuntimeError("secret internals")

    app.state.engine.batchers["ae"].predict = broken
    r = await client.post("/reconstruct", files={"file": ("x.png", png_bytes(), "image/png")})
    assert r.status_code == 500 and r.json()["error"] == "internal_error"
    assert "secret" not in r.text
