"""Image decoding and encoding (service/engine/imaging.py)."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from service.engine.imaging import ImageSpec, decode_input, encode_png, grid, to_uint8
from service.models import IMAGENET_NORMALISATION


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 224, 224), (3, 5, 7), (1, 1, 1)])
def test_png_round_trips_exactly_and_passes_pillows_checks(shape):
    image = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    png = encode_png(image)
    Image.open(io.BytesIO(png)).verify()  # chunk CRCs and structure
    decoded = Image.open(io.BytesIO(png))
    assert decoded.mode == ("L" if shape[0] == 1 else "RGB")
    assert decoded.size == (shape[2], shape[1])
    pixels = np.asarray(decoded).reshape(shape[1], shape[2], shape[0])
    assert np.array_equal(pixels, to_uint8(image))


def _jpeg(width: int, height: int) -> bytes:
    # smooth content, so that decoding at a reduced scale and resizing agree closely
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x / width, y / height, (x + y) / (width + height)], -1) * 255
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(out, format="JPEG", quality=95)
    return out.getvalue()


def test_large_jpegs_decode_at_reduced_scale_to_the_same_input():
    spec = ImageSpec(3, 224, IMAGENET_NORMALISATION, resize=256)
    big = decode_input(_jpeg(2400, 1800), "image/jpeg", spec, 10**8)
    assert big.shape == (1, 3, 224, 224)
    # the same scene decoded in full at a size that needs no reduction
    small = decode_input(_jpeg(300, 225), "image/jpeg", spec, 10**8)
    assert (big - small).abs().mean() < 0.05


def test_centre_crop_keeps_the_centre_of_a_wide_image():
    spec = ImageSpec(3, 224, IMAGENET_NORMALISATION, resize=256)
    pixels = np.zeros((256, 1024, 3), np.uint8)
    pixels[:, 384:640] = 255  # a white centre square, as wide as the shorter side
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    x = IMAGENET_NORMALISATION.denormalise(decode_input(out.getvalue(), "image/png", spec, 10**8))
    assert x.min() > 0.99  # the crop lies inside the white square


@pytest.mark.parametrize(
    ("count", "channels", "columns", "padding"),
    [(2, 1, 8, 2), (16, 1, 8, 2), (13, 3, 4, 1), (9, 1, 3, 0), (5, 3, 8, 2)],
)
def test_grid_lays_images_out_as_torchvision_does(count, channels, columns, padding):
    from torchvision.utils import make_grid  # the reference the service no longer imports

    images = torch.rand(count, channels, 6, 5, generator=torch.Generator().manual_seed(count))
    expected = make_grid(images, nrow=columns, padding=padding, pad_value=0.5)[:channels]
    assert torch.equal(grid(images, columns, padding), expected)


def test_grid_of_one_image_is_that_image():
    image = torch.rand(1, 1, 28, 28)
    assert torch.equal(grid(image), image[0])
