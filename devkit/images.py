"""Images for requests: random pixels, encoded."""

from __future__ import annotations

import io

import torch
from PIL import Image


def png_bytes(size=(28, 28), mode="L", seed=0, fmt="PNG") -> bytes:
    """A random image encoded as ``fmt``."""
    generator = torch.Generator().manual_seed(seed)
    channels = len(mode) if mode in ("RGB", "RGBA") else 1
    pixels = torch.randint(
        0, 256, (size[1], size[0], channels), generator=generator, dtype=torch.uint8
    ).numpy()
    image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()
