"""The synchronous and asynchronous clients: every operation once, in ``_Operations``; the two
differ only in how a request is sent and a retry waited for."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import httpx

from .errors import UnconvError, retry_after
from .results import parse

# a path, the file's bytes, a binary file object or a PIL image (sent as PNG)
ImageInput = str | os.PathLike | bytes | IO[bytes] | Any
DEFAULT_URL = "http://127.0.0.1:8000"
RETRY_WAIT_S = 1.0  # between retries of a 503 that names no Retry-After


def _upload(image: ImageInput, index: int) -> tuple[str, bytes, str]:
    """(file name, bytes, media type) of one image for a multipart ``file`` field."""
    if isinstance(image, (bytes, bytearray)):
        return (f"image{index}", bytes(image), "application/octet-stream")
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        return (path.name, path.read_bytes(), "application/octet-stream")
    if hasattr(image, "read"):
        name = Path(getattr(image, "name", f"image{index}")).name
        return (name, image.read(), "application/octet-stream")
    if hasattr(image, "save"):  # a PIL image
        import io

        out = io.BytesIO()
        image.save(out, format="PNG")
        return (f"image{index}.png", out.getvalue(), "image/png")
    raise TypeError(
        f"expected a path, bytes, a binary file or a PIL image, but received {type(image)!r}"
    )


def _given(**fields: Any) -> dict[str, Any]:
    """The fields the caller gave: the service's own defaults stand for the others."""
    return {name: value for name, value in fields.items() if value is not None}


def _form(fields: dict[str, Any]) -> dict[str, str]:
    return {name: str(value) for name, value in fields.items()}


class _Operations:
    """Every operation of the service; ``_call`` sends the request (sync or async)."""

    def _call(self, request: dict[str, Any], then: Callable[[Any], Any] = lambda x: x) -> Any:
        raise NotImplementedError

    def visualise(
        self,
        image: ImageInput,
        layer: int,
        *,
        network: str | None = None,
        k: int | None = None,
        channel: int | None = None,
        method: str | None = None,
        format: str | None = None,
    ) -> Any:
        """Projection of ``layer``'s top-k activations of ``image`` to pixel space.

        ``method``: ``deconvnet`` (Zeiler & Fergus), ``guided_backprop`` or ``saliency``.

        Parameters left out take the service's defaults (``GET /openapi.json`` states them).
        ``format``: ``png`` -> an image; ``json`` -> a dict with ``image`` and ``activations``;
        ``npy`` -> a float32 array (C, H, W) in the network's normalised input space.
        """
        fields = _given(
            layer=layer, network=network, k=k, channel=channel, method=method, format=format
        )
        files = [("file", _upload(image, 0))]
        return self._call(
            {"method": "POST", "url": "/visualise", "files": files, "data": _form(fields)}
        )

    def attribute(
        self,
        image: ImageInput,
        *,
        network: str | None = None,
        method: str | None = None,
        target: int | None = None,
        layer: int | None = None,
        steps: int | None = None,
        window: int | None = None,
        stride: int | None = None,
        format: str | None = None,
    ) -> Any:
        """Which pixels of ``image`` made a classifier's logit for ``target`` (by default the
        predicted class).

        ``method``: ``gradcam``, ``guided_gradcam`` (at ``layer``), ``integrated_gradients``
        (``steps``) or ``occlusion`` (``window``, ``stride``). ``format``: ``png`` -> the map
        over the image; ``json`` -> a dict with ``image``, ``target``, ``predicted`` and the
        ``top`` five classes; ``npy`` -> a float32 array, (1, H, W) for ``gradcam`` and
        ``occlusion``, (C, H, W) for the other two.
        """
        fields = _given(
            network=network,
            method=method,
            target=target,
            layer=layer,
            steps=steps,
            window=window,
            stride=stride,
            format=format,
        )
        files = [("file", _upload(image, 0))]
        return self._call(
            {"method": "POST", "url": "/attribute", "files": files, "data": _form(fields)}
        )

    def reconstruct(
        self,
        images: ImageInput | Sequence[ImageInput],
        *,
        model: str | None = None,
        format: str | None = None,
    ) -> Any:
        """Reconstructions of one or more images by an auto-encoder or VAE.

        ``png`` -> one image (a grid in input order for several); ``json`` -> a dict with
        ``images``, each an ``image`` and, for a VAE, its latent ``mean`` and ``log_var``.
        """
        if isinstance(images, (str, os.PathLike, bytes, bytearray)) or not isinstance(
            images, Sequence
        ):
            images = [images]
        files = [("file", _upload(image, i)) for i, image in enumerate(images)]
        fields = _given(model=model, format=format)
        return self._call(
            {"method": "POST", "url": "/reconstruct", "files": files, "data": _form(fields)}
        )

    def generate(
        self,
        *,
        model: str | None = None,
        n: int | None = None,
        seed: int | None = None,
        mean: Sequence[Sequence[float]] | None = None,
        log_var: Sequence[Sequence[float]] | None = None,
        interpolate: dict[str, Any] | None = None,
        label: int | None = None,
        labels: Sequence[int] | None = None,
        temperature: float | None = None,
        pixel_temperature: float | None = None,
        format: str | None = None,
    ) -> Any:
        """New images from a VAE's decoder: from its prior, given latents, or a line.

        ``png`` -> an image grid; ``json`` -> a dict with ``seed`` and ``images`` (each an
        ``image`` and its latent ``z``); ``npy`` -> a float32 array (n, C, H, W). ``label`` (or
        ``labels``, one per image) asks for a class the model lists under ``labels`` in
        ``models()`` (MNIST: digit d is label d). ``temperature`` scales the prior's spread;
        ``pixel_temperature`` below 1 sharpens the strokes (1: the decoder's plain mean).
        """
        body = _given(
            model=model,
            n=n,
            seed=seed,
            mean=mean,
            log_var=log_var,
            interpolate=interpolate,
            label=label,
            labels=list(labels) if labels is not None else None,
            temperature=temperature,
            pixel_temperature=pixel_temperature,
            format=format,
        )
        return self._call({"method": "POST", "url": "/generate", "json": body})

    def models(self) -> Any:
        """Every servable model: name, kind, availability and why not, shapes, metadata."""
        return self._call({"method": "GET", "url": "/models"}, lambda answer: answer["models"])

    def atlases(self) -> Any:
        """The feature atlases beside the checkpoints: network, data set, layers and feature
        maps; a stale one (built for other weights) is listed with why it is not served."""
        return self._call({"method": "GET", "url": "/atlas"}, lambda answer: answer["atlases"])

    def atlas(
        self,
        network: str,
        layer: int,
        channel: int,
        *,
        format: str | None = None,
        top: int | None = None,
    ) -> Any:
        """One feature map's strongest activations across the atlas's data set (Zeiler &
        Fergus's Figure 2). ``png`` -> the 9 projections beside the 9 patches; ``json`` -> a
        dict whose ``entries`` (strongest first) carry ``index``, ``y``, ``x``, ``value``,
        ``box`` and the images ``projection``, ``patch`` and ``image``. ``top``: only the
        strongest few entries.
        """
        url = f"/atlas/{quote(str(network), safe='')}/{int(layer)}/{int(channel)}"
        return self._call({"method": "GET", "url": url, "params": _given(format=format, top=top)})

    def health(self) -> Any:
        """Liveness (``/healthz``)."""
        return self._call({"method": "GET", "url": "/healthz"})

    def ready(self) -> Any:
        """Readiness (``/readyz``); a service still loading raises ``UnconvError`` 503."""
        return self._call({"method": "GET", "url": "/readyz"})


def _retry_wait(response: httpx.Response, attempt: int, retries: int) -> float | None:
    """Seconds to wait before retrying ``response``, or None to answer with it."""
    if response.status_code != 503 or attempt >= retries:
        return None
    wait = retry_after(response)
    return RETRY_WAIT_S if wait is None else wait


def _answer(response: httpx.Response, then: Callable[[Any], Any]) -> Any:
    if response.status_code >= 400:
        raise UnconvError.from_response(response)
    return then(parse(response))


def _headers(api_key: str | None) -> dict[str, str]:
    return {"X-API-Key": api_key} if api_key else {}


class UnconvClient(_Operations):
    """Blocking client.

    Parameters
    ----------
    base_url : str
        Where the service answers, with its path prefix if any (``http://host/unconv``).
    api_key : str, optional
        Sent as ``X-API-Key`` (the service's ``UNCONV_API_KEY``).
    timeout : float
        Seconds for each request.
    retries : int
        How many times a 503 (not ready, overloaded, ...) is retried after waiting its
        ``Retry-After``; 0 (the default) raises at once.
    http : httpx.Client, optional
        Your own client (its base URL is used; e.g. in tests).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 0,
        http: httpx.Client | None = None,
    ):
        self.http = http or httpx.Client(base_url=base_url, timeout=timeout)
        self.http.headers.update(_headers(api_key))
        self.retries = retries

    def _call(self, request, then=lambda answer: answer):
        attempt = 0
        while True:
            response = self.http.request(**request)
            wait = _retry_wait(response, attempt, self.retries)
            if wait is None:
                return _answer(response, then)
            time.sleep(wait)
            attempt += 1

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> UnconvClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncUnconvClient(_Operations):
    """Asynchronous client: the same parameters and methods as ``UnconvClient``, awaited."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 0,
        http: httpx.AsyncClient | None = None,
    ):
        self.http = http or httpx.AsyncClient(base_url=base_url, timeout=timeout)
        self.http.headers.update(_headers(api_key))
        self.retries = retries

    async def _call(self, request, then=lambda answer: answer):
        attempt = 0
        while True:
            response = await self.http.request(**request)
            wait = _retry_wait(response, attempt, self.retries)
            if wait is None:
                return _answer(response, then)
            await asyncio.sleep(wait)
            attempt += 1

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncUnconvClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
