"""The OpenAPI document: every answer a route can give, and the constraints of the served models.

FastAPI derives the request and response bodies from ``schemas.py``. What it cannot derive is
added here: each error status a route returns, with its stable codes and headers, and, once the
models are loaded, what the served models accept (their names, the layers, channels and ``k`` of
each network, the latent size of each VAE), so that a request the document calls valid is one
the service answers with 2xx.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from ..engine import DEFAULT_K, ModelState
from .errors import ERRORS, codes_by_status
from .forms import form_value_schema
from .schemas import ErrorResponse
from .v2_contract import narrow_v2

_HEADERS = {
    401: {"WWW-Authenticate": {"description": "`ApiKey`", "schema": {"type": "string"}}},
    503: {
        "Retry-After": {
            "description": "Seconds to wait before retrying",
            "required": True,
            "schema": {"type": "integer", "minimum": 0},
        }
    },
}
MODEL_ROUTE_ERRORS = (401, 404, 413, 422, 499, 500, 503, 504)
UPLOAD_ROUTE_ERRORS = (400, 415, *MODEL_ROUTE_ERRORS)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, each with the JSON error body."""
    responses: dict[int | str, dict[str, Any]] = {}
    by_status = codes_by_status()
    for status in sorted(statuses):
        meanings = "; ".join(f"`{code}`: {ERRORS[code].meaning}" for code in by_status[status])
        responses[status] = {"model": ErrorResponse, "description": meanings}
        if status in _HEADERS:
            responses[status]["headers"] = _HEADERS[status]
    return responses


def image_responses(json_model: type, media_types: tuple[str, ...]) -> dict[int, dict]:
    """The 200 answer of a model route: PNG, ``json_model`` as JSON, or other binary types."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    content = {"image/png": binary} | {media: binary for media in media_types}
    return {
        200: {
            "model": json_model,
            "content": content,
            "description": "PNG (default), JSON or .npy, chosen by `format`",
        }
    }


def install_openapi(app: FastAPI) -> None:
    """Serve a document narrowed to the models of the running service (``app.state.engine``).

    Until the models are loaded the generic document is served; after, the narrowed one is
    built once and kept.
    """
    generic: Callable[[], dict] = app.openapi
    kept: dict[int, dict] = {}

    def openapi() -> dict:
        engine = getattr(app.state, "engine", None)
        # a model loaded or unloaded (POST /v2/repository/...) changes the document
        key = (id(engine), getattr(engine, "revision", 0))
        if engine is not None and key in kept:
            return kept[key]
        spec = copy.deepcopy(generic())
        generate = spec["components"]["schemas"].get("GenerateRequest")
        if generate is not None:
            generate.setdefault("allOf", []).extend(_PRIOR_ALONE)
        if engine is None:
            return spec
        narrow(spec, engine.models.values(), engine.settings)
        narrow_atlas(spec["paths"], engine.atlases.values())
        if engine.ready:
            kept.clear()
            kept[key] = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def narrow(spec: dict, models, settings) -> dict:
    """Constrain ``spec`` to what ``models`` accept. Mutates and returns ``spec``.

    Unavailable models (a network without its weights, a broken checkpoint) are left out: they
    answer 503. A route that no model serves is left out of the document.
    """
    models = [m for m in models if m.state is not ModelState.UNAVAILABLE]
    paths = spec["paths"]
    for path, endpoint in (("/visualise", "visualise"), ("/reconstruct", "reconstruct")):
        if path in paths and not _names(models, endpoint):
            del paths[path]
    if "/generate" in paths and not _names(models, "generate"):
        del paths["/generate"]
    if "/attribute" in paths and not _names(models, "attribute"):
        del paths["/attribute"]
    if "/visualise" in paths:
        _narrow_visualise(_form_schema(paths["/visualise"]), models)
    if "/attribute" in paths:
        _narrow_attribute(_form_schema(paths["/attribute"]), models)
    if "/reconstruct" in paths:
        form = _form_schema(paths["/reconstruct"])
        form_value_schema(form["properties"]["model"])["enum"] = _names(models, "reconstruct")
        form["properties"]["file"]["maxItems"] = settings.max_files
    if "/generate" in paths:
        _narrow_generate(spec["components"]["schemas"]["GenerateRequest"], models)
    narrow_v2(paths, models, settings)
    if settings.model_control != "explicit":  # refused (403), not part of this service's API
        for action in ("load", "unload"):
            paths.pop(f"/v2/repository/models/{{name}}/{action}", None)
    return spec


ATLAS_MAP = "/atlas/{network}/{layer}/{channel}"


def narrow_atlas(paths: dict, atlases) -> None:
    """Constrain the atlas map route to the served atlases' networks, layers and feature maps
    (a layer's own range is checked: 404); left out when no atlas is served."""
    served = [a.atlas for a in atlases if a.served]
    if ATLAS_MAP not in paths:
        return
    if not served:
        del paths[ATLAS_MAP]
        return
    schemas = {p["name"]: p["schema"] for p in paths[ATLAS_MAP]["get"]["parameters"]}
    schemas["network"]["enum"] = sorted(a.network for a in served)
    schemas["layer"]["enum"] = sorted({n for a in served for n in a.layers})
    schemas["channel"]["maximum"] = max(a.channels(n) for a in served for n in a.layers) - 1


def _form_schema(path: dict) -> dict:
    return path["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]


def _names(models, endpoint: str) -> list[str]:
    return sorted(m.name for m in models if endpoint in m.endpoints)


def _narrow_visualise(form: dict, models) -> None:
    """One branch per layer of each loaded network: the layer, its channels and its ``k``."""
    default = form["properties"]["network"].get("default")
    networks = [m for m in models if "visualise" in m.endpoints]
    form_value_schema(form["properties"]["network"])["enum"] = sorted(m.name for m in networks)
    branches = []
    for model in sorted(networks, key=lambda m: m.name):
        if model.name == default:  # absent or empty: the default network
            named, required = {"network": {"enum": [model.name, ""]}}, []
        else:
            named, required = {"network": {"const": model.name}}, ["network"]
        if not model.layer_shapes:  # not loaded: any layer, answered 503
            branches.append({"properties": named, "required": required})
            continue
        for layer, shape in enumerate(model.layer_shapes, start=1):
            fixed = named | {"layer": {"const": layer}}
            all_maps, one_map = model.candidates(layer, None), model.candidates(layer, 0)
            branches.append(_layer_branch(fixed, required, all_maps, channels=None))
            branches.append(_layer_branch(fixed, required, one_map, channels=shape[0]))
    form["anyOf"] = branches


def _narrow_attribute(form: dict, models) -> None:
    """One branch per classifier: its classes, feature layers, input size and least stride."""
    default = form["properties"]["network"].get("default")
    networks = sorted((m for m in models if "attribute" in m.endpoints), key=lambda m: m.name)
    form_value_schema(form["properties"]["network"])["enum"] = [m.name for m in networks]
    branches = []
    for model in networks:
        if model.name == default:  # absent or empty: the default network
            named, required = {"network": {"enum": [model.name, ""]}}, []
        else:
            named, required = {"network": {"const": model.name}}, ["network"]
        net = model.classifier
        if net is not None:  # not loaded: any value, answered 503
            occlusion = model.occlusion_defaults
            named |= {
                "target": _optional_integer(0, net.num_classes - 1),
                "layer": _optional_integer(1, net.feature_layers),
                "window": _optional_integer(1, model.image_spec.size),
                "stride": _optional_integer(occlusion.min_stride, None),
            }
        branches.append({"properties": named, "required": required})
    form["anyOf"] = branches


def _optional_integer(low: int, high: int | None) -> dict:
    """A form field that is an integer in [low, high], or empty (absent)."""
    integer = {"type": "integer", "minimum": low} | ({} if high is None else {"maximum": high})
    return {"anyOf": [integer, {"type": "string", "maxLength": 0}]}


def _layer_branch(fixed: dict, required: list[str], candidates: int, channels: int | None):
    """Requests for one layer: with ``channels``, the top-k of one feature map of
    ``candidates`` activations; without (``channel`` absent or empty), the top-k of all."""
    properties = fixed | {"k": {"maximum": candidates}}
    needs = [*required]
    if candidates < DEFAULT_K:  # the default k does not fit: k must be given
        properties["k"] = {"type": "integer", "maximum": candidates}
        needs.append("k")
    if channels is None:
        properties["channel"] = {"type": "string", "maxLength": 0}
    else:
        properties["channel"] = {"type": "integer", "maximum": channels - 1}
        needs.append("channel")
    return {"properties": properties, "required": needs}


def _narrow_generate(schema: dict, models) -> None:
    """The VAEs by name, each with its latent size."""
    vaes = [m for m in models if "generate" in m.endpoints]
    properties = schema["properties"]
    properties["model"]["enum"] = sorted(m.name for m in vaes)
    default = properties["model"].get("default")
    branches = []
    for model in sorted(vaes, key=lambda m: m.name):
        branch: dict[str, Any] = {
            "properties": {"model": {"const": model.name}},
            "required": [] if model.name == default else ["model"],
        }
        branch["properties"] |= _labels_schema(model.labels)
        size = model.latent_size
        if size is not None:
            vector = {"type": "array", "minItems": size, "maxItems": size}
            vectors = {"anyOf": [{"type": "array", "items": vector}, {"type": "null"}]}
            line = {"type": "object", "properties": {"start": vector, "end": vector}}
            branch["properties"] |= {
                "mean": vectors,
                "log_var": vectors,
                "interpolate": {"anyOf": [line, {"type": "null"}]},
            }
        branches.append(branch)
    schema["anyOf"] = branches


def _labels_schema(labels: list[str] | None) -> dict:
    """``label`` and ``labels``: indices into the model's labels; null for one without."""
    if not labels:
        return {"label": {"type": "null"}, "labels": {"type": "null"}}
    index = {"type": "integer", "minimum": 0, "maximum": len(labels) - 1}
    return {
        "label": {"anyOf": [index, {"type": "null"}]},
        "labels": {"anyOf": [{"type": "array", "items": index}, {"type": "null"}]},
    }


def _alone(field: str, given: dict, absent: tuple[str, ...]) -> dict:
    """When ``field`` is given (not null), the ``absent`` fields are absent or null."""
    return {
        "if": {"properties": {field: given}, "required": [field]},
        "then": {"properties": {name: {"type": "null"} for name in absent}},
    }


_GIVEN_LATENTS = ("mean", "log_var", "interpolate")
# interpolate leaves mean and log_var out; label, labels and temperature are for prior samples
_PRIOR_ALONE = [
    _alone("interpolate", {"type": "object"}, ("mean", "log_var")),
    _alone("temperature", {"type": "number"}, _GIVEN_LATENTS),
    _alone("label", {"type": "integer"}, (*_GIVEN_LATENTS, "labels")),
    _alone("labels", {"type": "array"}, _GIVEN_LATENTS),
]
