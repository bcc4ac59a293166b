"""Images in and out: uploaded bytes to network inputs, and tensors back to PNG or .npy bytes.

Everything here is plain, blocking code; a batch's inference and codec threads run it
(``service/inference.py``), never the event loop.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
import zlib
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..models import Normalisation
from .errors import RequestError

SUPPORTED_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_SUPPORTED_TYPES = {*SUPPORTED_FORMATS.values(), "image/jpg"}


@dataclass(frozen=True)
class Upload:
    """An uploaded image file, not decoded yet."""

    data: bytes
    content_type: str | None
    filename: str | None = None


@dataclass(frozen=True)
class Pixels:
    """Images that arrive decoded (the v2 protocol's tensors): (n, C, H, W) float32 intensities
    in [0, 1], of the model's input shape. They skip decoding, not normalisation."""

    images: torch.Tensor


@dataclass(frozen=True)
class ImageSpec:
    """How an upload becomes a network input of shape (1, channels, size, size).

    With ``resize`` set, the shorter side is resized to it and the centre ``size`` x ``size``
    cropped (ImageNet style); otherwise the whole image is resized to ``size`` x ``size`` (MNIST
    style). An image that already has the input size is never resampled.
    """

    channels: int
    size: int
    normalisation: Normalisation
    resize: int | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)


def open_image(
    data: bytes, content_type: str | None, max_pixels: int, shorter_side: int | None = None
) -> Image.Image:
    """
    Decode an upload, refusing decompression bombs before any pixel is decoded.

    With ``shorter_side``, a large JPEG is decoded at the smallest of 1/2, 1/4 or 1/8 scale
    that keeps its shorter side at least that long, which is many times faster for photos.

    Raises
    ------
    RequestError
        ``unsupported_media_type`` for anything but PNG, JPEG or WebP, ``image_too_large``
        for more than ``max_pixels`` pixels, ``invalid_image`` for a corrupt or truncated one.
    """
    declared = (content_type or "").split(";")[0].strip().lower()
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))  # reads the header only
        except UnidentifiedImageError:
            if declared in _SUPPORTED_TYPES:
                raise RequestError(
                    "invalid_image",
                    f"the {declared} upload cannot be "
                    "decoded; send an intact PNG, JPEG or WebP file",
                ) from None
            raise _unsupported(declared or "unknown") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _too_large("the image", max_pixels) from None
        if image.format not in SUPPORTED_FORMATS:
            raise _unsupported(f"{image.format} image")
        width, height = image.size
        if width * height > max_pixels:
            raise _too_large(f"a {width}x{height} image", max_pixels)
        if shorter_side is not None and image.format == "JPEG":
            scale = shorter_side / min(width, height)
            image.draft(image.mode, (math.ceil(width * scale), math.ceil(height * scale)))
        try:
            image.load()
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise RequestError(
                "invalid_image",
                f"the {image.format} image is corrupt or truncated ({err}); send the whole file",
            ) from None
    return ImageOps.exif_transpose(image)


def _unsupported(what: str) -> RequestError:
    return RequestError(
        "unsupported_media_type", f"expected a PNG, JPEG or WebP image but received {what}"
    )


def _too_large(what: str, max_pixels: int) -> RequestError:
    return RequestError(
        "image_too_large",
        f"{what} has more than UNCONV_MAX_IMAGE_PIXELS={max_pixels} pixels; send a smaller image",
    )


def to_input(image: Image.Image, spec: ImageSpec) -> torch.Tensor:
    """A decoded image as a normalised (1, C, size, size) float32 network input."""
    image = _eight_bit(image).convert("L" if spec.channels == 1 else "RGB")
    if image.size != (spec.size, spec.size):
        # resampling only the centre box costs less than resizing all and cropping after
        box = None if spec.resize is None else _centre_box(image.size, spec.resize, spec.size)
        image = image.resize((spec.size, spec.size), Image.Resampling.BILINEAR, box=box)
    array = np.asarray(image, dtype=np.float32).reshape(spec.size, spec.size, spec.channels)
    # (C, H, W) with plain strides: permuted views can make convolutions pick channels-last
    pixels = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)) / 255.0)
    return spec.normalisation.normalise(pixels.unsqueeze(0))


def _eight_bit(image: Image.Image) -> Image.Image:
    """16-bit greys scaled to 8 bits (Pillow's convert clips them at 255), and palettes with
    transparency through RGBA (as Pillow asks, with a warning, to convert them)."""
    if image.mode.startswith("I"):  # I;16, I;16B, I: a 16-bit PNG's range
        grey = np.asarray(image, dtype=np.float32) / 257.0
        return Image.fromarray(np.clip(grey + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        return image.convert("RGBA")
    return image


def _centre_box(size: tuple[int, int], resize: int, crop: int) -> tuple[float, ...]:
    """The source box that becomes the centre ``crop`` square once the shorter side is
    resized to ``resize`` (torchvision's Resize then CenterCrop)."""
    width, height = size
    side = crop * min(width, height) / resize
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side


def decode_input(
    data: bytes, content_type: str | None, spec: ImageSpec, max_pixels: int
) -> torch.Tensor:
    """Upload bytes -> (1, C, size, size) network input; see ``open_image`` for the errors."""
    return to_input(open_image(data, content_type, max_pixels, spec.resize or spec.size), spec)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(..., C, H, W) intensities in [0, 1] -> (..., H, W, C) uint8."""
    return (images.clamp(0, 1) * 255 + 0.5).to(torch.uint8).movedim(-3, -1).numpy()


def encode_png(image: torch.Tensor) -> bytes:
    """(C, H, W) intensities in [0, 1] -> PNG bytes (grey for one channel, RGB for three).

    Written directly rather than through Pillow: no row filters and zlib level 1 are three
    times faster on projections and digits with files as small, and zlib releases the GIL.
    Run-length matching only (``Z_RLE``) halves the time again on projections, whose files it
    also makes smaller, and costs digit grids 5-8% in size (docs/performance.md).
    """
    array = np.ascontiguousarray(to_uint8(image))
    height, width, channels = array.shape
    rows = np.zeros((height, 1 + width * channels), dtype=np.uint8)  # filter byte 0: none
    rows[:, 1:] = array.reshape(height, width * channels)
    colour_type = {1: 0, 3: 2}[channels]  # greyscale, RGB
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", _deflate(rows.data)),
            _png_chunk(b"IEND", b""),
        )
    )


def _deflate(data) -> bytes:
    compressor = zlib.compressobj(1, zlib.DEFLATED, 15, 8, zlib.Z_RLE)
    return compressor.compress(data) + compressor.flush()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def grid(
    images: torch.Tensor, columns: int = 8, padding: int = 2, pad_value: float = 0.5
) -> torch.Tensor:
    """
    (N, C, H, W) -> one (C, H', W') image: the images row by row in order, ``columns`` to a
    row, each framed by ``padding`` pixels of ``pad_value`` (torchvision's ``make_grid``
    layout, without importing it). One image comes back as it is.
    """
    if len(images) == 1:
        return images[0]
    count, channels, height, width = images.shape
    columns = min(columns, count)
    rows = -(-count // columns)
    step_y, step_x = height + padding, width + padding
    tiled = images.new_full(
        (channels, rows * step_y + padding, columns * step_x + padding), pad_value
    )
    for i, image in enumerate(images):
        top, left = padding + (i // columns) * step_y, padding + (i % columns) * step_x
        tiled[:, top : top + height, left : left + width] = image
    return tiled


def encode_npy(array: torch.Tensor) -> bytes:
    """A float32 tensor as the bytes of a ``.npy`` file."""
    out = io.BytesIO()
    np.save(out, array.detach().cpu().numpy().astype(np.float32), allow_pickle=False)
    return out.getvalue()


def projection_to_image(projection: torch.Tensor) -> torch.Tensor:
    """A deconvnet projection (C, H, W) made viewable: zero is mid-grey, scaled per image so the
    strongest value of either sign reaches black or white."""
    scale = projection.abs().max().clamp_min(1e-12)
    return 0.5 + 0.5 * projection / scale


_WARM = torch.tensor([1.0, 0.25, 0.0]).view(3, 1, 1)  # where the map is positive
_COOL = torch.tensor([0.0, 0.45, 1.0]).view(3, 1, 1)  # where it is negative


def attribution_to_image(image: torch.Tensor, attribution: torch.Tensor) -> torch.Tensor:
    """
    An attribution map drawn over its input: the input in grey, tinted warm where the map is
    positive and cool where it is negative, the more strongly the larger the value (scaled
    per image so that the largest magnitude gets the full tint).

    Parameters
    ----------
    image : (C, H, W) torch.Tensor
        The input as intensities in [0, 1].
    attribution : (1 or C, H, W) torch.Tensor
        The map; its channels are summed.

    Returns
    -------
    overlay : (3, H, W) torch.Tensor
        Intensities in [0, 1].
    """
    grey = image.clamp(0, 1).mean(dim=0, keepdim=True).expand(3, -1, -1)
    signed = attribution.sum(dim=0, keepdim=True)
    signed = signed / signed.abs().max().clamp_min(1e-12)  # (1, H, W) in [-1, 1]
    strength = 0.85 * signed.abs()
    tint = torch.where(signed >= 0, _WARM, _COOL)
    return (1 - strength) * (0.25 + 0.5 * grey) + strength * tint
