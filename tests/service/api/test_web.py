"""The page's files and the offline docs over HTTP, without a browser: caching headers, no API
key, nothing loaded from outside, and no place among the model traffic in /metrics."""

import hashlib
import re

from service.api.web import STATIC_DIR

PAGE_FILES = ["/", "/static/app.js", "/static/api.js", "/static/style.css", "/static/favicon.svg"]
DOCS_FILES = ["/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"]


async def test_static_files_have_cache_control_and_an_etag_that_answers_304(make_client):
    client, _ = await make_client()
    for path in PAGE_FILES + DOCS_FILES:
        r = await client.get(path)
        assert r.status_code == 200, path
        expected = "no-cache" if path in PAGE_FILES else "public, max-age=86400"
        assert r.headers["cache-control"] == expected, path
        etag = r.headers["etag"]
        again = await client.get(path, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b"", path
        assert again.headers["etag"] == etag and again.headers["cache-control"] == expected
        changed = await client.get(path, headers={"If-None-Match": '"another"'})
        assert changed.status_code == 200, path
    index = await client.get("/")
    assert index.headers["content-type"].startswith("text/html")
    assert (
        hashlib.sha256(index.content).digest()
        == hashlib.sha256((STATIC_DIR / "index.html").read_bytes()).digest()
    )
    script = await client.get("/static/api.js")
    assert script.headers["content-type"].split(";")[0] == "text/javascript"  # module scripts


async def test_the_page_and_docs_need_no_api_key_but_the_models_do(make_client):
    client, _ = await make_client(api_key="secret")
    for path in [*PAGE_FILES, *DOCS_FILES, "/docs", "/redoc", "/static/samples/digit-7.png"]:
        assert (await client.get(path)).status_code == 200, path
    assert (await client.get("/models")).status_code == 401
    assert (await client.get("/models", headers={"X-API-Key": "secret"})).status_code == 200


async def test_docs_load_nothing_from_outside_the_service(make_client):
    client, _ = await make_client()
    for path in ("/", "/docs", "/redoc"):
        policy = (await client.get(path)).headers["content-security-policy"]
        assert policy.startswith("default-src 'self';") and "http" not in policy, path
    for path in ("/docs", "/redoc"):
        html = (await client.get(path)).text
        urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*["']([^"']+)""", html)
        assert urls and all(url.startswith("/") for url in urls), (path, urls)
        for url in urls:
            assert (await client.get(url)).status_code == 200, url
        assert "/static/favicon.svg" in urls


async def test_metrics_leave_the_page_out_of_the_traffic(make_client):
    client, _ = await make_client()
    for path in [*PAGE_FILES, *DOCS_FILES, "/docs", "/redoc", "/static/missing.js"]:
        await client.get(path)
    await client.post("/generate", json={"n": 1, "seed": 0})
    text = (await client.get("/metrics")).text
    counted = re.findall(r'^unconv_requests_total\{method="(\w+)",route="([^"]+)"', text, re.M)
    assert counted == [("POST", "/generate")]
