"""``unconv-client`` (and ``python -m unconv_client``): the client's operations from a shell.

Every option of an operation defaults to *not given*, so that the service's defaults apply;
the options given are passed by name to the client method of the same name.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from . import __version__
from .client import DEFAULT_URL, UnconvClient
from .errors import UnconvError
from .results import PngBytes

_NOT_FIELDS = {"url", "api_key", "retries", "command", "out"}
_GIVEN = argparse.SUPPRESS  # an option not given is absent, not None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unconv-client",
        description="Talk to an unconv service. Options left out take the service's defaults.",
    )
    parser.add_argument("--version", action="version", version=f"unconv-client {__version__}")
    parser.add_argument(
        "--url",
        default=os.environ.get("UNCONV_URL", DEFAULT_URL),
        help="service address, with its path prefix if any (env UNCONV_URL)",
    )
    parser.add_argument(
        "--api-key", default=os.environ.get("UNCONV_API_KEY"), help="X-API-Key (env UNCONV_API_KEY)"
    )
    parser.add_argument(
        "--retries", type=int, default=0, help="retry a 503 this many times after its Retry-After"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    vis = sub.add_parser("visualise", help="deconvnet projection of an image's layer")
    vis.add_argument("image", type=Path)
    vis.add_argument("--layer", type=int, required=True)
    vis.add_argument("--network", default=_GIVEN)
    vis.add_argument("--k", type=int, default=_GIVEN)
    vis.add_argument("--channel", type=int, default=_GIVEN)
    vis.add_argument(
        "--method", choices=("deconvnet", "guided_backprop", "saliency"), default=_GIVEN
    )
    vis.add_argument("--format", choices=("png", "json", "npy"), default=_GIVEN)
    att = sub.add_parser("attribute", help="which pixels made a classifier's class")
    att.add_argument("image", type=Path)
    att.add_argument("--network", default=_GIVEN)
    att.add_argument(
        "--method",
        choices=("gradcam", "guided_gradcam", "integrated_gradients", "occlusion"),
        default=_GIVEN,
    )
    for name in ("target", "layer", "steps", "window", "stride"):
        att.add_argument(f"--{name}", type=int, default=_GIVEN)
    att.add_argument("--format", choices=("png", "json", "npy"), default=_GIVEN)
    rec = sub.add_parser("reconstruct", help="auto-encoder / VAE reconstruction of images")
    rec.add_argument("images", type=Path, nargs="+")
    rec.add_argument("--model", default=_GIVEN)
    rec.add_argument("--format", choices=("png", "json"), default=_GIVEN)
    gen = sub.add_parser("generate", help="new images from a VAE")
    gen.add_argument("--model", default=_GIVEN)
    gen.add_argument("--n", type=int, default=_GIVEN)
    gen.add_argument("--seed", type=int, default=_GIVEN)
    gen.add_argument("--label", type=int, default=_GIVEN, help="a class the model lists")
    gen.add_argument("--labels", type=int, nargs="+", default=_GIVEN, help="one per image")
    gen.add_argument("--temperature", type=float, default=_GIVEN, help="the prior's spread")
    gen.add_argument(
        "--pixel-temperature", type=float, default=_GIVEN, help="below 1: sharper strokes"
    )
    for name in ("mean", "log-var"):
        gen.add_argument(f"--{name}", type=json.loads, default=_GIVEN, help="JSON: [[...], ...]")
    gen.add_argument(
        "--interpolate", type=json.loads, default=_GIVEN, help='JSON: {"start", "end", "steps"}'
    )
    gen.add_argument("--format", choices=("png", "json", "npy"), default=_GIVEN)
    atlas = sub.add_parser("atlas", help="a feature map's strongest activations (Figure 2)")
    atlas.add_argument("network")
    atlas.add_argument("layer", type=int)
    atlas.add_argument("channel", type=int)
    atlas.add_argument("--format", choices=("png", "json"), default=_GIVEN)
    atlas.add_argument("--top", type=int, default=_GIVEN, help="only the strongest few")
    for command in (vis, att, rec, gen, atlas):
        command.add_argument("-o", "--out", type=Path, help="where to write the image or array")
    sub.add_parser("models", help="list the servable models")
    sub.add_parser("atlases", help="list the feature atlases")
    sub.add_parser("health", help="liveness")
    sub.add_parser("ready", help="readiness")
    return parser


def call(client: UnconvClient, args: argparse.Namespace) -> Any:
    """``args.command`` of ``client`` with every operation argument that was given."""
    fields = {name: value for name, value in vars(args).items() if name not in _NOT_FIELDS}
    return getattr(client, args.command)(**fields)


def _write(result: Any, out: Path | None) -> None:
    if isinstance(result, (dict, list)):
        print(json.dumps(_jsonable(result), indent=2))
        return
    if out is None:
        raise SystemExit("error: the answer is an image or array: give -o FILE")
    if isinstance(result, bytes) and not isinstance(result, PngBytes):
        out.write_bytes(result)
    elif type(result).__module__.startswith("numpy"):
        import numpy as np

        np.save(out, result)
    else:  # a PIL image, PngBytes or NpyBytes
        result.save(out)
    print(f"wrote {out}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    if isinstance(value, bytes):
        return repr(value)
    if hasattr(value, "size") and hasattr(value, "save"):  # a PIL image
        return f"<{value.size[0]}x{value.size[1]} image>"
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with UnconvClient(args.url, args.api_key, retries=args.retries) as client:
        try:
            result = call(client, args)
        except UnconvError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        except (httpx.HTTPError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    _write(result, getattr(args, "out", None))
    return 0
