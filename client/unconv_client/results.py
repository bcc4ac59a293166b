"""What the service's answers become, chosen by their media type: JSON a dict, PNG a PIL image
and npy a NumPy array when the extras are installed, bytes that say which extra gives more
when not."""

from __future__ import annotations

import base64
import io
import os
from typing import Any

import httpx


class PngBytes(bytes):
    """A PNG answer, as bytes because Pillow is not installed; ``save`` writes the file.

    ``pip install "unconv-client[pillow]"`` returns a ``PIL.Image.Image`` instead.
    """

    extra = "pillow"

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "wb") as out:
            out.write(self)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__}: {len(self)} bytes; "
            f'pip install "unconv-client[{self.extra}]" returns '
            f"{'a PIL image' if self.extra == 'pillow' else 'a NumPy array'}>"
        )


class NpyBytes(PngBytes):
    """An npy answer (float32 array), as bytes because NumPy is not installed; ``save`` writes
    the ``.npy`` file. ``pip install "unconv-client[numpy]"`` returns an array instead."""

    extra = "numpy"


def png(data: bytes) -> Any:
    """A ``PIL.Image.Image`` when Pillow is installed, else ``PngBytes``."""
    try:
        from PIL import Image
    except ImportError:
        return PngBytes(data)
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def npy(data: bytes) -> Any:
    """A ``numpy.ndarray`` when NumPy is installed, else ``NpyBytes``."""
    try:
        import numpy as np
    except ImportError:
        return NpyBytes(data)
    return np.load(io.BytesIO(data), allow_pickle=False)


def decoded(body: Any) -> Any:
    """A JSON answer with every base64 ``<name>_png`` replaced by ``<name>`` (see ``png``):
    ``image_png`` by ``image``, an atlas entry's ``patch_png`` by ``patch``..."""
    if isinstance(body, list):
        return [decoded(item) for item in body]
    if not isinstance(body, dict):
        return body
    body = {key: decoded(value) for key, value in body.items()}
    for key in [k for k, v in body.items() if k.endswith("_png") and isinstance(v, str)]:
        body[key.removesuffix("_png")] = png(base64.b64decode(body.pop(key)))
    return body


_BY_MEDIA_TYPE = {
    "application/json": lambda response: decoded(response.json()),
    "image/png": lambda response: png(response.content),
    "application/x-npy": lambda response: npy(response.content),
}


def parse(response: httpx.Response) -> Any:
    """A successful answer by its media type; one this client does not know stays bytes."""
    media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    reader = _BY_MEDIA_TYPE.get(media_type)
    return reader(response) if reader else response.content
