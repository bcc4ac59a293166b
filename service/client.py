"""A Python client for the unconv service, over HTTP only (httpx, Pillow, NumPy; no torch).

>>> client = UnconvClient("http://127.0.0.1:8000")
>>> client.generate(n=16, seed=7).save("samples.png")
>>> client.visualise("cat.jpg", layer=4).save("layer4.png")

``AsyncUnconvClient`` has the same methods, to be awaited. Every error of the service raises
``UnconvError`` carrying its status, stable code and detail.

Command line: ``python -m service.client visualise cat.jpg --layer 4 -o out.png`` (see --help).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

ImageInput = str | Path | bytes | Image.Image


class UnconvError(Exception):
    """An error answer of the service: HTTP status, stable ``code`` and ``detail``."""

    def __init__(self, status: int, code: str, detail: str, retry_after: float | None = None):
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail, self.retry_after = status, code, detail, retry_after

    @classmethod
    def from_response(cls, response: httpx.Response) -> UnconvError:
        try:
            body = response.json()
            code, detail = body["error"], body["detail"]
        except (ValueError, KeyError, TypeError):
            code, detail = "http_error", response.text[:200]
        retry = response.headers.get("retry-after")
        return cls(response.status_code, code, detail, float(retry) if retry else None)


def _image_file(image: ImageInput, index: int = 0) -> tuple[str, bytes, str]:
    if isinstance(image, Image.Image):
        out = io.BytesIO()
        image.save(out, format="PNG")
        return (f"image{index}.png", out.getvalue(), "image/png")
    if isinstance(image, bytes):
        return (f"image{index}", image, "application/octet-stream")
    path = Path(image)
    return (path.name, path.read_bytes(), "application/octet-stream")


def _png(response: httpx.Response) -> Image.Image:
    return Image.open(io.BytesIO(response.content))


def _npy(response: httpx.Response) -> np.ndarray:
    return np.load(io.BytesIO(response.content), allow_pickle=False)


def _decoded(body: dict, key: str = "image_png") -> dict:
    """A JSON answer with every base64 PNG replaced by a PIL image under ``image``."""
    body = dict(body)
    if key in body:
        body["image"] = Image.open(io.BytesIO(base64.b64decode(body.pop(key))))
    if "images" in body:
        body["images"] = [_decoded(item) for item in body["images"]]
    return body


def _details(response: httpx.Response) -> dict:
    return _decoded(response.json())


class _Operations(ABC):
    """Every endpoint once; ``_call`` is what the sync and async clients do differently."""

    @abstractmethod
    def _call(self, request: dict, parse: Callable[[httpx.Response], Any]):
        """Send ``request`` (httpx keyword arguments) and ``parse`` the checked response."""

    def visualise(
        self,
        image: ImageInput,
        layer: int,
        network: str = "alexnet",
        k: int = 9,
        channel: int | None = None,
        format: str = "png",
    ):
        """Zeiler & Fergus projection of ``layer``'s top-k activations.

        ``format``: ``png`` -> PIL image; ``json`` -> dict with ``image`` and ``activations``;
        ``npy`` -> float32 array (C, H, W) in the network's normalised input space.
        """
        fields = {"layer": layer, "network": network, "k": k, "format": format}
        if channel is not None:
            fields["channel"] = channel
        request = {
            "method": "POST",
            "url": "/visualise",
            "files": {"file": _image_file(image)},
            "data": {k_: str(v) for k_, v in fields.items()},
        }
        return self._call(request, {"png": _png, "json": _details, "npy": _npy}[format])

    def reconstruct(
        self, images: ImageInput | Sequence[ImageInput], model: str = "ae", format: str = "png"
    ):
        """Reconstructions: ``png`` -> one PIL image (a grid for several); ``json`` -> dict with
        ``images`` (each an ``image`` and, for a VAE, ``mean`` and ``log_var``)."""
        if isinstance(images, (str, Path, bytes, Image.Image)):
            images = [images]
        files = [("file", _image_file(image, i)) for i, image in enumerate(images)]
        request = {
            "method": "POST",
            "url": "/reconstruct",
            "files": files,
            "data": {"model": model, "format": format},
        }
        return self._call(request, {"png": _png, "json": _details}[format])

    def generate(
        self,
        n: int = 8,
        seed: int | None = None,
        model: str = "vae",
        mean: Sequence[Sequence[float]] | None = None,
        log_var: Sequence[Sequence[float]] | None = None,
        interpolate: dict | None = None,
        format: str = "png",
        label: int | None = None,
        labels: Sequence[int] | None = None,
    ):
        """New images from a VAE: ``png`` -> PIL grid; ``json`` -> dict with ``seed`` and
        ``images`` (each an ``image`` and its ``z``); ``npy`` -> float32 array (n, C, H, W).

        ``label`` (or ``labels``, one per image) asks for that class: an index into the
        ``labels`` that ``models()`` lists for the model (MNIST: digit d is label d)."""
        body = {
            "model": model,
            "n": None if labels is not None else n,
            "seed": seed,
            "mean": mean,
            "log_var": log_var,
            "interpolate": interpolate,
            "label": label,
            "labels": list(labels) if labels is not None else None,
            "format": format,
        }
        request = {
            "method": "POST",
            "url": "/generate",
            "json": {k: v for k, v in body.items() if v is not None},
        }
        return self._call(request, {"png": _png, "json": _details, "npy": _npy}[format])

    def models(self):
        """Every servable model: name, kind, availability, shapes, metadata."""
        return self._call({"method": "GET", "url": "/models"}, lambda r: r.json()["models"])

    def health(self):
        return self._call({"method": "GET", "url": "/healthz"}, lambda r: r.json())

    def ready(self):
        return self._call({"method": "GET", "url": "/readyz"}, lambda r: r.json())


def _headers(api_key: str | None) -> dict:
    return {"X-API-Key": api_key} if api_key else {}


def _checked(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise UnconvError.from_response(response)
    return response


class UnconvClient(_Operations):
    """Blocking client. Pass ``http`` to use your own ``httpx.Client`` (e.g. in tests)."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        timeout: float = 60.0,
        http: httpx.Client | None = None,
    ):
        self.http = http or httpx.Client(base_url=base_url, timeout=timeout)
        self.http.headers.update(_headers(api_key))

    def _call(self, request, parse):
        return parse(_checked(self.http.request(**request)))

    def close(self) -> None:
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class AsyncUnconvClient(_Operations):
    """Asynchronous client; every method is awaited."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        timeout: float = 60.0,
        http: httpx.AsyncClient | None = None,
    ):
        self.http = http or httpx.AsyncClient(base_url=base_url, timeout=timeout)
        self.http.headers.update(_headers(api_key))

    async def _call(self, request, parse):
        return parse(_checked(await self.http.request(**request)))

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()


def _save(result: Any, out: Path | None) -> None:
    if isinstance(result, Image.Image):
        if out is None:
            raise SystemExit("error: give -o FILE.png for an image")
        result.save(out)
        print(f"wrote {out}")
    elif isinstance(result, np.ndarray):
        if out is None:
            raise SystemExit("error: give -o FILE.npy for an array")
        np.save(out, result)
        print(f"wrote {out} {result.shape}")
    else:
        print(json.dumps(_jsonable(result), indent=2))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Image.Image):
        return f"<{value.size[0]}x{value.size[1]} image>"
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service.client", description="Talk to an unconv service."
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("UNCONV_URL", "http://127.0.0.1:8000"),
        help="service address (env UNCONV_URL)",
    )
    parser.add_argument(
        "--api-key", default=os.environ.get("UNCONV_API_KEY"), help="X-API-Key (env UNCONV_API_KEY)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    vis = sub.add_parser("visualise", help="deconvnet projection of an image")
    vis.add_argument("image", type=Path)
    vis.add_argument("--layer", type=int, required=True)
    vis.add_argument("--network", default="alexnet")
    vis.add_argument("--k", type=int, default=9)
    vis.add_argument("--channel", type=int)
    vis.add_argument("--format", choices=("png", "json", "npy"), default="png")
    rec = sub.add_parser("reconstruct", help="auto-encoder / VAE reconstruction")
    rec.add_argument("images", type=Path, nargs="+")
    rec.add_argument("--model", default="ae")
    rec.add_argument("--format", choices=("png", "json"), default="png")
    gen = sub.add_parser("generate", help="new images from a VAE")
    gen.add_argument("--n", type=int, default=8)
    gen.add_argument("--seed", type=int)
    gen.add_argument("--model", default="vae")
    gen.add_argument(
        "--label", type=int, help="a class the model lists under labels (MNIST: the digit)"
    )
    gen.add_argument("--format", choices=("png", "json", "npy"), default="png")
    for command in (vis, rec, gen):
        command.add_argument("-o", "--out", type=Path, help="where to write the image/array")
    sub.add_parser("models", help="list the servable models")
    return parser


def _command(client: UnconvClient, args: argparse.Namespace) -> Any:
    commands = {
        "visualise": lambda: client.visualise(
            args.image, args.layer, args.network, args.k, args.channel, args.format
        ),
        "reconstruct": lambda: client.reconstruct(args.images, args.model, args.format),
        "generate": lambda: client.generate(
            args.n, args.seed, args.model, format=args.format, label=args.label
        ),
        "models": client.models,
    }
    return commands[args.command]()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with UnconvClient(args.url, args.api_key) as client:
        try:
            result = _command(client, args)
        except UnconvError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        except (httpx.HTTPError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    _save(result, getattr(args, "out", None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
