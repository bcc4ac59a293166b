"""Multipart parsing (service/forms.py), alone and through the real app."""

import pytest

from service.api.errors import ERRORS
from service.api.forms import parse_form
from service.engine.errors import RequestError
from tests.helpers import png_bytes

CT = "multipart/form-data; boundary=XyZ"


def _part(name: str, value: bytes, filename: str | None = None, ctype: str | None = None):
    head = f'Content-Disposition: form-data; name="{name}"'
    if filename is not None:
        head += f'; filename="{filename}"'
    if ctype:
        head += f"\r\nContent-Type: {ctype}"
    return b"--XyZ\r\n" + head.encode() + b"\r\n\r\n" + value + b"\r\n"


def test_fields_and_files_in_order_with_preamble_and_epilogue():
    png = png_bytes()
    body = (
        b"ignored preamble\r\n"
        + _part("layer", b"3")
        + _part("file", png, "a.png", "image/png")
        + _part("file", b"not a delimiter: --XyZ", "b.png")
        + b"--XyZ--\r\nignored epilogue"
    )
    form = parse_form(body, CT)
    assert form.fields == {"layer": "3"}
    a, b = form.files["file"]
    assert (a.data, a.content_type, a.filename) == (png, "image/png", "a.png")
    assert (b.data, b.content_type) == (b"not a delimiter: --XyZ", None)


def test_quoted_boundary_and_an_empty_form():
    form = parse_form(b"--a b--\r\n", 'multipart/form-data; boundary="a b"')
    assert form.fields == {} and form.files == {}


@pytest.mark.parametrize(
    "body, content_type, status, detail",
    [
        (b'{"layer": 1}', "application/json", 415, "not application/json"),
        (b"", None, 415, "without a content type"),
        (b"", "multipart/form-data", 400, "has no boundary"),
        (_part("layer", b"1"), CT, 400, "closing boundary is missing"),
        (b"--XyZ\r\nContent-Disposition: form-data; name=x\r\n--XyZ--", CT, 400, "no blank line"),
        (b"--XyZ\r\nno colon\r\n\r\n1\r\n--XyZ--", CT, 400, "malformed header line"),
        (b"--XyZ\r\nContent-Type: text/plain\r\n\r\n1\r\n--XyZ--", CT, 400, "Content-Disposition"),
        (_part("k", b"\xff\xfe") + b"--XyZ--", CT, 400, "not UTF-8"),
        (_part("k", b"1") + _part("k", b"2") + b"--XyZ--", CT, 422, "k: given more than once"),
    ],
)
def test_malformed_bodies_are_named(body, content_type, status, detail):
    with pytest.raises(RequestError) as err:
        parse_form(body, content_type)
    assert ERRORS[err.value.code].status == status and detail in err.value.detail


def test_urlencoded_fields_are_read():
    form = parse_form(b"layer=2&network=alex%20net&k=", "application/x-www-form-urlencoded")
    assert form.fields == {"layer": "2", "network": "alex net", "k": ""} and form.files == {}


@pytest.fixture
async def client(make_client):
    client, _ = await make_client(networks=["alexnet"])
    return client


@pytest.mark.parametrize(
    "files, data, detail",
    [
        ({"image": ("x.png", png_bytes())}, {"layer": "1"}, "image: unexpected file"),
        ({"file": ("x.png", png_bytes())}, {"layer": "1", "chanel": "3"}, "chanel: Extra inputs"),
        (None, {"layer": "1", "file": "x.png"}, "file: a text field, not a file"),
        (
            [("file", ("a.png", png_bytes())), ("file", ("b.png", png_bytes()))],
            {"layer": "1"},
            "file: /visualise takes one image",
        ),
    ],
)
async def test_unknown_or_misplaced_fields_are_422(client, files, data, detail):
    r = await client.post("/visualise", files=files, data=data)
    assert r.status_code == 422 and r.json()["error"] == "invalid_parameters"
    assert detail in r.json()["detail"]


async def test_empty_fields_take_their_defaults_as_in_a_browser_form(client):
    files = {"file": ("x.png", png_bytes((64, 64), "RGB"))}
    r = await client.post("/visualise", files=files, data={"layer": "2", "k": "", "channel": ""})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"


async def test_a_json_body_is_415_and_says_what_to_send(client):
    r = await client.post("/reconstruct", json={"file": "x"})
    assert r.status_code == 415 and r.json()["error"] == "unsupported_media_type"
    assert "multipart/form-data" in r.json()["detail"]
