"""Odd and hostile inputs: each gets its documented answer, and the service stays healthy."""

import io
import socket
import threading

import numpy as np
import pytest
from PIL import Image

from tests.helpers import png_bytes
from tests.servers import running_service, served_checkpoints


def _encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def _pattern(size=(20, 12), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0]), dtype=np.uint8)


def _palette_with_transparency() -> bytes:
    image = Image.fromarray(_pattern()).convert("P")
    return _encode(image, transparency=0)


def _animated(fmt: str) -> tuple[bytes, bytes]:
    """An animated image, and its first frame alone."""
    frames = [Image.fromarray(_pattern(seed=s)).convert("RGB") for s in range(3)]
    lossless = {"lossless": True} if fmt == "WEBP" else {}
    animated = _encode(
        frames[0], fmt, save_all=True, append_images=frames[1:], duration=50, **lossless
    )
    return animated, _encode(frames[0], fmt, **lossless)


@pytest.fixture
async def client(make_client):
    client, _ = await make_client()
    return client


@pytest.fixture
async def alexnet_client(make_client):
    client, _ = await make_client(networks=["alexnet"])
    return client


async def _reconstruct(client, data: bytes) -> bytes:
    r = await client.post("/reconstruct", files={"file": ("x", data, "image/png")})
    assert r.status_code == 200, r.text
    return r.content


MODES = {
    "CMYK JPEG": lambda: _encode(Image.fromarray(_pattern()).convert("CMYK"), "JPEG"),
    "palette with transparency": _palette_with_transparency,
    "LA": lambda: _encode(Image.fromarray(_pattern()).convert("LA")),
    "1-bit": lambda: _encode(Image.fromarray(_pattern()).convert("1")),
    "RGBA WebP": lambda: _encode(Image.fromarray(_pattern()).convert("RGBA"), "WEBP"),
    "1x1": lambda: png_bytes((1, 1)),
    "1x3000": lambda: png_bytes((1, 3000)),
    "3000x1 RGB": lambda: png_bytes((3000, 1), "RGB"),
}


async def test_every_mode_and_shape_is_answered(alexnet_client):
    client = alexnet_client  # one app for all: loading AlexNet is the slow part
    for kind, make in MODES.items():
        data = make()
        await _reconstruct(client, data)
        for network, layer in (("cnn", 2), ("alexnet", 1)):
            r = await client.post(
                "/visualise",
                files={"file": ("x", data, "image/png")},
                data={"network": network, "layer": str(layer)},
            )
            assert r.status_code == 200, (kind, network, r.text)


async def test_sixteen_bit_greys_are_scaled_not_clipped(client):
    eight = _pattern()
    sixteen = Image.frombytes("I;16", (20, 12), (eight.astype("<u2") * 257).tobytes())
    assert await _reconstruct(client, _encode(sixteen)) == await _reconstruct(
        client, _encode(Image.fromarray(eight))
    )


async def test_the_exif_orientation_is_honoured(client):
    pixels = _pattern()
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: show the pixels rotated 90 degrees clockwise
    tagged = _encode(Image.fromarray(pixels), exif=exif.tobytes())
    upright = _encode(Image.fromarray(np.rot90(pixels, k=-1).copy()))
    assert await _reconstruct(client, tagged) == await _reconstruct(client, upright)
    assert await _reconstruct(client, tagged) != await _reconstruct(
        client, _encode(Image.fromarray(pixels))
    )


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
async def test_an_animated_image_gives_its_first_frame(client, fmt):
    animated, first = _animated(fmt)
    assert await _reconstruct(client, animated) == await _reconstruct(client, first)


CT = "multipart/form-data; boundary=XyZ"
PNG = png_bytes()
FILE_PART = (
    b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
    b"Content-Type: image/png\r\n\r\n" + PNG + b"\r\n"
)


def _field(name: bytes, value: bytes) -> bytes:
    return (
        b'--XyZ\r\nContent-Disposition: form-data; name="' + name + b'"\r\n\r\n' + value + b"\r\n"
    )


@pytest.mark.parametrize(
    "body, content_type, status, code",
    [
        (FILE_PART + b"--XyZ--\r\n", "multipart/form-data", 400, "invalid_form"),
        (FILE_PART, CT, 400, "invalid_form"),  # never closed
        (FILE_PART + _field(b"model", b"\xff\xfe") + b"--XyZ--", CT, 400, "invalid_form"),
        (FILE_PART + _field(b"model", b"ae") * 2 + b"--XyZ--", CT, 422, "invalid_parameters"),
        (FILE_PART + _field(b"\xff", b"ae") + b"--XyZ--", CT, 422, "invalid_parameters"),
        (b"--XyZ--", CT, 422, "invalid_parameters"),  # no file at all
        (b"", CT, 400, "invalid_form"),
    ],
    ids=[
        "no boundary",
        "never closed",
        "non-UTF-8 value",
        "duplicate field",
        "non-UTF-8 name",
        "no parts",
        "empty body",
    ],
)
async def test_malformed_multipart_bodies(client, body, content_type, status, code):
    r = await client.post("/reconstruct", content=body, headers={"content-type": content_type})
    assert (r.status_code, r.json()["error"]) == (status, code), r.text
    assert r.json()["detail"]
    await _reconstruct(client, PNG)  # still healthy


DEEP = 100_000


@pytest.mark.parametrize(
    "raw",
    [
        "[" * DEEP + "]" * DEEP,
        '{"mean": ' + "[" * DEEP + "]" * DEEP + "}",
        '{"n": 1e400}',
        '{"n": 100000000000000000000000000000}',
        '{"seed": 1e30}',
        '{"seed": 9223372036854775808}',
        '{"mean": [[1e309, 0, 0, 0, 0, 0]]}',
        '{"n": true}',
        '{"n": "3"}',
        '"text"',
        "null",
        "3",
        "\xff\xfe{}",
    ],
)
async def test_hostile_json_is_422(client, raw):
    body = raw.encode("latin-1")
    r = await client.post("/generate", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"] == "invalid_parameters", r.text
    assert (await client.post("/generate", json={"n": 1})).status_code == 200


@pytest.mark.parametrize("field", ["layer", "k", "channel"])
async def test_form_numbers_too_large_for_their_field_are_422(client, field):
    fields = {"network": "cnn", "layer": "1", field: str(10**30)}
    r = await client.post("/visualise", files={"file": ("x.png", PNG)}, data=fields)
    assert r.status_code == 422 and r.json()["error"] == "invalid_parameters"


# --- over a real socket: what ASGI test clients cannot show ---

LIMIT = 1 << 20


@pytest.fixture(scope="module")
def server(checkpoint_dir, tmp_path_factory):
    directory = tmp_path_factory.mktemp("hostile")
    checkpoints = served_checkpoints(checkpoint_dir, directory / "checkpoints")
    env = {"UNCONV_MAX_UPLOAD_BYTES": str(LIMIT)}
    with running_service(checkpoints, directory / "server.log", **env) as (_, url):
        yield url.removeprefix("http://").split(":")


def _connect(server) -> socket.socket:
    host, port = server
    sock = socket.create_connection((host, int(port)), timeout=60)
    return sock


def _response(sock: socket.socket) -> bytes:
    """The head and the whole body (by its Content-Length) of one response."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _length(data: bytes) -> int:
    head = data.partition(b"\r\n\r\n")[0].lower()
    for line in head.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def _head(path: str, headers: str) -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: test\r\n{headers}\r\n".encode()


def test_a_content_length_far_over_the_limit_is_refused_before_the_body(server):
    with _connect(server) as sock:
        sock.sendall(
            _head("/reconstruct", f"Content-Length: {10**12}\r\n" + f"Content-Type: {CT}\r\n")
        )
        answer = _response(sock)  # not one byte of the body sent
    assert answer.startswith(b"HTTP/1.1 413 ") and b"UNCONV_MAX_UPLOAD_BYTES" in answer


def test_a_chunked_upload_is_refused_once_it_passes_the_limit(server):
    chunk = b"x" * 65536
    sent = 0
    with _connect(server) as sock:
        sock.sendall(_head("/reconstruct", f"Transfer-Encoding: chunked\r\nContent-Type: {CT}\r\n"))
        sock.settimeout(0.05)
        answer = b""
        while not answer and sent < 64 * LIMIT:
            try:
                sock.sendall(b"10000\r\n" + chunk + b"\r\n")
                sent += len(chunk)
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.settimeout(60)
        answer += _response(sock) if b"\r\n\r\n" not in answer else b""
    assert answer.startswith(b"HTTP/1.1 413 ")
    # refused as it grew: far less than the 64 MB the client was ready to send
    assert sent < 16 * LIMIT


def test_a_slow_body_does_not_delay_other_requests(server):
    import httpx

    body = b'{"n": 2, "seed": 3}'
    host, port = server
    with _connect(server) as slow:
        headers = f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        slow.sendall(_head("/generate", headers) + body[:5])  # and then nothing for a while
        done = threading.Event()

        def others():
            with httpx.Client(base_url=f"http://{host}:{port}", timeout=60) as http:
                for _ in range(3):
                    assert http.post("/generate", json={"n": 1}).status_code == 200
                    assert http.get("/healthz").status_code == 200
            done.set()

        thread = threading.Thread(target=others)
        thread.start()
        thread.join(120)
        assert done.is_set()  # answered while the slow body is still incomplete
        slow.sendall(body[5:])
        assert _response(slow).startswith(b"HTTP/1.1 200 ")
