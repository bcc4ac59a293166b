"""Every operation and parameter of the service's /openapi.json is reachable from the client,
in Python and on the command line, so that the two cannot drift apart.

The document is read from the running app at test time, so a parameter added to a route fails
here until the client covers it. Out of the client's scope: the Open Inference Protocol routes
(paths under ``/v2``, which have their own clients), the health and metrics routes (tag
``health``; ``health()`` and ``ready()`` exist but are not required) and the web page's routes
(not in the document).
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import httpx
import pytest
from unconv_client import UnconvClient
from unconv_client.cli import build_parser

from service.api import app
from service.api.forms import parse_form

OUT_OF_SCOPE_TAGS = {"health"}
UPLOAD = b"\x89PNG not really"


def _resolve(schema: dict, spec: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _property_names(schema: dict, spec: dict) -> set[str]:
    """Every property a body may carry: its own and those its branches name."""
    schema = _resolve(schema, spec)
    names = set(schema.get("properties", {}))
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(key, []):
            names |= _property_names(branch, spec)
    return names


def _is_upload(schema: dict) -> bool:
    return schema.get("format") == "binary" or schema.get("items", {}).get("format") == "binary"


def _sample(schema: dict, spec: dict) -> Any:
    """A value of the schema's type; the client checks no values, so any will do."""
    schema = _resolve(schema, spec)
    if "enum" in schema:
        return next(value for value in schema["enum"] if value != "")
    options = [
        s for s in schema.get("anyOf", []) if s.get("type") != "null" and "maxLength" not in s
    ]
    if options:
        return _sample(options[0], spec)
    kind = schema.get("type")
    samples = {"integer": 3, "number": 0.5, "string": "x", "boolean": True, "object": {"a": 1}}
    if kind == "array":
        return [_sample(schema.get("items", {}), spec)]
    if kind in samples:
        return samples[kind]
    raise AssertionError(f"no sample for the schema {schema}: extend _sample")


def _operations(spec: dict) -> list[tuple[str, str, dict]]:
    _PATHS.clear()
    _PATHS.update(spec["paths"])
    return [
        (method.upper(), path, operation)
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if not path.startswith("/v2") and not OUT_OF_SCOPE_TAGS & set(operation.get("tags", []))
    ]


def _method_name(path: str) -> str:
    """The client's method for a path: its words joined by ``_``; a path that ends in
    parameters (``/atlas/{network}/...``) takes its first word, and the list route of the same
    word (``/atlas``) its plural."""
    words = [w for w in path.strip("/").split("/") if not w.startswith("{")]
    name = "_".join(words)
    if "{" not in path and any(p.startswith(path + "/{") for p in _PATHS):
        return name + "es" if name.endswith("s") else name + "s"
    return name


_PATHS: set[str] = set()
HEADERS = {"if-none-match"}  # caching headers are HTTP's business, not the client's


def _parameters(operation: dict, spec: dict) -> tuple[str | None, dict[str, dict], set[str]]:
    """(upload field or None, {parameter: schema}, required parameters) of one operation; path
    and query parameters count as the client's parameters."""
    given = {}
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "header" and parameter["name"].lower() in HEADERS:
            continue
        assert parameter["in"] in ("path", "query"), f"{parameter['name']}: extend the test"
        given[parameter["name"]] = parameter
    content = operation.get("requestBody", {}).get("content", {})
    if not content:
        required = {name for name, p in given.items() if p.get("required")}
        return None, {name: p["schema"] for name, p in given.items()}, required
    (body,) = content.values()
    schema = _resolve(body["schema"], spec)
    properties = {name: {} for name in _property_names(schema, spec)}
    properties |= schema.get("properties", {})
    uploads = [name for name, prop in properties.items() if _is_upload(prop)]
    upload = uploads[0] if uploads else None
    properties.pop(upload, None)
    return upload, properties, set(schema.get("required", [])) - {upload}


def _sent(request: httpx.Request) -> tuple[dict[str, Any], set[str]]:
    """The fields a request carried (as the service's own form parser reads them) and its
    upload fields."""
    if request.method == "GET":
        return dict(request.url.params), set()
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = parse_form(request.content, request.headers["content-type"])
        return form.fields, set(form.files)
    return (json.loads(request.content) if request.content else {}), set()


@pytest.fixture
async def spec(make_client):
    http, _ = await make_client()
    served = (await http.get("/openapi.json")).json()
    # routes the running app leaves out while nothing serves them (the atlas map without an
    # atlas) come from the generic document, with their schemas
    generic = app.openapi()
    served["paths"] = generic["paths"] | served["paths"]
    served["components"]["schemas"] = (
        generic["components"]["schemas"] | served["components"]["schemas"]
    )
    return served


@pytest.fixture
def recorded():
    requests: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={"models": [], "atlases": []})

    http = httpx.Client(transport=httpx.MockTransport(answer), base_url="http://unconv.test")
    with UnconvClient(http=http) as client:
        yield client, requests


def _call(client, method: str, path: str, upload: str | None, fields: dict[str, Any]):
    name = _method_name(path)
    operation = getattr(client, name, None)
    assert operation is not None, f"{method} {path}: the client has no method {name}()"
    accepted = inspect.signature(operation).parameters
    missing = set(fields) - set(accepted)
    assert not missing, f"{method} {path}: {name}() has no parameter {sorted(missing)}"
    operation(*([UPLOAD] if upload else []), **fields)


def test_the_scope_holds_the_model_routes(spec):
    paths = {(method, path) for method, path, _ in _operations(spec)}
    assert paths >= {
        ("POST", "/visualise"),
        ("POST", "/reconstruct"),
        ("POST", "/generate"),
        ("GET", "/models"),
    }


def test_every_operation_and_parameter_is_sent_as_given_and_only_then(spec, recorded):
    client, requests = recorded
    for method, path, operation in _operations(spec):
        upload, properties, required = _parameters(operation, spec)
        base = {name: _sample(properties[name], spec) for name in required}
        for name in [None, *sorted(set(properties) - required)]:
            fields = base | ({name: _sample(properties[name], spec)} if name else {})
            _call(client, method, path, upload, fields)
            request = requests.pop()
            in_path = {k: v for k, v in fields.items() if "{" + k + "}" in path}
            assert (request.method, request.url.path) == (method, path.format(**in_path))
            sent, uploads = _sent(request)
            assert uploads == ({upload} if upload else set()), (path, uploads)
            # only the given fields: the service's defaults stand for the rest
            assert set(sent) == set(fields) - set(in_path), (path, name, sent)
            if name and name not in in_path:
                as_sent = str(fields[name]) if upload or method == "GET" else fields[name]
                assert sent[name] == as_sent, (path, name, sent[name])


def test_every_parameter_has_an_option_on_the_command_line(spec):
    (commands,) = (a for a in build_parser()._actions if a.dest == "command")
    for method, path, operation in _operations(spec):
        name = _method_name(path)
        assert name in commands.choices, f"{method} {path}: no command {name}"
        upload, properties, _ = _parameters(operation, spec)
        options = {action.dest for action in commands.choices[name]._actions}
        options -= {"help", "out"}
        positional = {"image", "images"} & options
        assert options - positional == set(properties), (path, sorted(options))
        assert bool(positional) == bool(upload), (path, options)
