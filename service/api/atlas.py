"""The feature-atlas routes: which atlases are served, and one feature map's Figure 2 (PNG) or
its entries (JSON). An answer changes only with its atlas's files: each carries an ETag, and a
request that names it in ``If-None-Match`` is answered 304."""

from __future__ import annotations

import asyncio
import base64
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from ..engine import not_ready
from ..engine.atlases import AtlasEntry, ServedAtlas, render
from ..engine.imaging import encode_png, projection_to_image
from .atlas_schemas import (
    AtlasDataset,
    AtlasEntryInfo,
    AtlasInfo,
    AtlasLayer,
    AtlasListResponse,
    AtlasMapResponse,
)
from .contract import error_responses, image_responses
from .serving import engine_of

atlas_router = APIRouter(tags=["atlas"])
CACHE_CONTROL = "no-cache"  # revalidate each time: the ETag answers 304 while the atlas stands


@atlas_router.get(
    "/atlas", response_model=AtlasListResponse, responses=error_responses(401, 500, 503)
)
async def atlases(request: Request) -> AtlasListResponse:
    """The feature atlases beside the checkpoints: network, data set, layers and feature maps;
    a stale or broken one is listed with why it is not served."""
    engine = engine_of(request)
    if not engine.ready:
        raise not_ready("the models are")
    return AtlasListResponse(atlases=[_info(a) for a in engine.atlases.values()])


def _info(served: ServedAtlas) -> AtlasInfo:
    if served.atlas is None:
        return AtlasInfo(network=served.network, served=False, reason=served.reason)
    document = served.atlas.document
    layers = [
        AtlasLayer(layer=n, name=e["name"], feature_maps=e["shape"][0], shape=e["shape"])
        for n, e in served.atlas.layers.items()
    ]
    return AtlasInfo(
        network=served.network,
        served=served.served,
        reason=served.reason,
        dataset=_dataset(document),
        weights_sha256=served.atlas.weights_sha256,
        top=document.get("top"),
        layers=layers,
        created=document.get("created"),
    )


def _dataset(document: dict) -> AtlasDataset:
    return AtlasDataset.model_validate(document["dataset"], from_attributes=False)


@atlas_router.get(
    "/atlas/{network}/{layer}/{channel}",
    response_class=Response,
    responses=image_responses(AtlasMapResponse, ())
    | {304: {"description": "Not modified: the ETag in If-None-Match is current"}}
    | error_responses(401, 404, 422, 500, 503),
)
async def atlas_map(
    request: Request,
    network: str,
    layer: Annotated[int, PathParam(ge=1, le=10_000)],
    channel: Annotated[int, PathParam(ge=0, le=1_000_000)],
    format: Annotated[Literal["png", "json"], Query()] = "png",
    top: Annotated[
        int | None, Query(ge=1, le=1000, description="Only the strongest `top` entries")
    ] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Figure 2 of Zeiler & Fergus for one feature map: its strongest activations across the
    data set, projected to pixels beside the patches that caused them (PNG), or as JSON."""
    engine = engine_of(request)
    if not engine.ready:
        raise not_ready("the models are")
    served, entries = await engine.atlas(network, layer, channel)
    entries = entries[:top]
    etag = f'"{served.version}-{layer}-{channel}-{format}-{len(entries)}"'
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if if_none_match is not None and etag in [t.strip() for t in if_none_match.split(",")]:
        return Response(status_code=304, headers=headers)
    if format == "png":
        window = tuple(served.atlas.layers[layer]["window"])
        png = await asyncio.to_thread(lambda: encode_png(render(entries, window)))
        return Response(png, media_type="image/png", headers=headers)
    body = await asyncio.to_thread(_map_json, served, layer, channel, entries)
    return Response(body, media_type="application/json", headers=headers)


def _png(image) -> str:
    return base64.b64encode(encode_png(image)).decode("ascii")


def _map_json(served: ServedAtlas, layer: int, channel: int, entries: list[AtlasEntry]) -> str:
    document = served.atlas.document
    names = document["dataset"].get("paths", {})
    return AtlasMapResponse(
        network=served.network,
        layer=layer,
        layer_name=served.atlas.layers[layer]["name"],
        channel=channel,
        dataset=_dataset(document),
        weights_sha256=served.atlas.weights_sha256,
        entries=[
            AtlasEntryInfo(
                index=e.index,
                name=names.get(str(e.index)),
                y=e.y,
                x=e.x,
                value=e.value,
                box=list(e.box),
                projection_png=_png(projection_to_image(e.projection_patch)),
                patch_png=_png(e.patch),
                image_png=_png(e.image),
            )
            for e in entries
        ],
    ).model_dump_json()
