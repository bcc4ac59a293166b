"""The README's pictures, made by a running service through the client.

Usage: ``python -m bench.pictures.figures --url http://127.0.0.1:8000 [--out docs/images]
[--checkpoints checkpoints]``, with ``--checkpoints`` the directory the service serves; each
picture's record goes to ``docs/images/provenance.json`` (``bench.pictures.provenance``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageOps
from unconv_client import UnconvClient

from training.data import load_mnist_5k

from . import provenance

SCALE = 4


def _row(images: list[Image.Image], gap: int = 2) -> Image.Image:
    width = sum(i.width for i in images) + gap * (len(images) - 1)
    row = Image.new("L", (width, max(i.height for i in images)), 128)
    x = 0
    for image in images:
        row.paste(image.convert("L"), (x, 0))
        x += image.width + gap
    return row


def _stack(rows: list[Image.Image], gap: int = 2) -> Image.Image:
    out = Image.new("L", (max(r.width for r in rows), sum(r.height for r in rows) + gap), 128)
    y = 0
    for row in rows:
        out.paste(row, (0, y))
        y += row.height + gap
    return out


def _big(image: Image.Image) -> Image.Image:
    return image.resize((image.width * SCALE, image.height * SCALE), Image.Resampling.NEAREST)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument(
        "--checkpoints", type=Path, default=Path("checkpoints"), help="the directory it serves"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    splits = load_mnist_5k()
    digits = [Image.fromarray(splits.test_images[i].numpy()) for i in range(50, 1000, 100)]
    with UnconvClient(args.url) as client:
        rows = []
        for digit in digits[:4]:
            layers = [client.visualise(digit, layer, network="cnn", k=9) for layer in (1, 3, 4, 6)]
            rows.append(_row([digit, *layers]))
        _big(_stack(rows)).save(args.out / "visualise-cnn.png")
        answer = client.reconstruct(digits, model="vae", format="json")
        reconstructions = [image["image"] for image in answer["images"]]
        pair = _stack([_row(digits), _row(reconstructions)])
        _big(ImageOps.expand(pair, border=2, fill=128)).save(args.out / "reconstruct-vae.png")
        _big(client.generate(n=32, seed=7)).save(args.out / "generate-vae.png")
        models = provenance.served_records(client.models(), args.checkpoints)
    pictures = {"visualise-cnn.png": ["cnn"], "reconstruct-vae.png": ["vae"]}
    pictures["generate-vae.png"] = ["vae"]
    provenance.record(args.out, pictures, "python -m bench.pictures.figures", models)
    print(f"wrote {args.out}/visualise-cnn.png, reconstruct-vae.png, generate-vae.png")


if __name__ == "__main__":
    main()
