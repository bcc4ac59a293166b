"""The inference routes of the OpenAPI document, narrowed to each served model: one concrete
``/v2/models/<name>/infer`` path per model, whose request body states the model's own inputs
(names, datatypes, shapes, value ranges), parameters and outputs.

What JSON Schema cannot state: a tensor's ``data`` holds as many values as its ``shape``
multiplies to (tests/schemathesis_hooks.py fills it so in the fuzzer's valid requests).
"""

from __future__ import annotations

import copy

from ..engine import DEFAULT_K, METHODS
from .schemas import MAX_GENERATE

_INFER = "/v2/models/{name}/infer"
_INFER_VERSION = "/v2/models/{name}/versions/{version}/infer"
_NULL = {"type": "null"}


def _nullable(schema: dict) -> dict:
    return {"anyOf": [schema, _NULL]}


def _tensor(name: str, shape: tuple[int, ...], most: int, low: float, high: float) -> dict:
    """An input tensor as JSON data: its first dimension 1 to ``most``, the rest fixed."""
    dims = [{"type": "integer", "minimum": 1, "maximum": most}]
    dims += [{"type": "integer", "enum": [size]} for size in shape[1:]]
    return {
        "type": "object",
        "required": ["name", "datatype", "shape", "data"],
        "properties": {
            "name": {"type": "string", "enum": [name]},
            "datatype": {"type": "string", "enum": ["FP32"]},
            "shape": {
                "type": "array",
                "prefixItems": dims,
                "minItems": len(dims),
                "maxItems": len(dims),
            },
            "data": {"type": "array", "items": {"type": "number", "minimum": low, "maximum": high}},
            # binary_data_size needs a binary part, which a JSON body does not have
            "parameters": _nullable({"type": "object", "maxProperties": 0}),
        },
    }


def _branch(inputs: list[dict], parameters: dict, outputs: list[str], needs=()) -> dict:
    """One kind of request: exactly ``inputs``, these parameters, these outputs."""
    properties = {"binary_data_output": {"type": "boolean"}} | parameters
    listed = {"type": "array", "minItems": len(inputs), "maxItems": len(inputs)}
    if inputs:
        listed["items"] = inputs[0]  # one input per request kind
    output = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "enum": outputs},
            "parameters": _nullable(
                {"type": "object", "properties": {"binary_data": {"type": "boolean"}}}
            ),
        },
    }
    params = {"type": "object", "properties": properties, "additionalProperties": False}
    if needs:
        params["required"] = list(needs)
    return {
        "type": "object",
        "required": (["inputs"] if inputs else []) + (["parameters"] if needs else []),
        "properties": {
            "id": _nullable({"type": "string"}),
            "inputs": listed,
            "parameters": params if needs else _nullable(params),
            "outputs": _nullable({"type": "array", "items": output}),
        },
    }


def _image(model, most: int) -> dict:
    return _tensor("image", (-1, *model.image_spec.shape), most, 0, 1)


def _vae_branches(model, max_files: int) -> list[dict]:
    latent = model.latent_size
    z = _tensor("z", (-1, latent), MAX_GENERATE, -1e4, 1e4)
    labels = model.labels
    label = (
        _nullable({"type": "integer", "minimum": 0, "maximum": len(labels) - 1})
        if labels
        else _NULL  # no labels: N(0, I) only
    )
    sampling = {
        "n": _nullable({"type": "integer", "minimum": 1, "maximum": MAX_GENERATE}),
        "seed": _nullable({"type": "integer", "minimum": 0, "maximum": 2**63 - 1}),
        "label": label,
    }
    return [
        _branch([_image(model, max_files)], {}, ["reconstruction", "mean", "log_var"]),
        _branch([z], {}, ["generated", "z"]),
        _branch([], sampling, ["generated", "z"]),
    ]


def _visualise_branches(model, max_files: int) -> list[dict]:
    """Per layer, with and without ``channel``: the ``k`` that fits (as ``/visualise``)."""
    image = [_image(model, max_files)]
    outputs = ["projection", "activations", "activation_values"]
    method = _nullable({"type": "string", "enum": list(METHODS)})
    branches = []
    for layer, shape in enumerate(model.layer_shapes, start=1):
        for channels in (None, shape[0]):
            candidates = model.candidates(layer, None if channels is None else 0)
            k = {"type": "integer", "minimum": 1, "maximum": candidates}
            needs = ["layer"] + (["channel"] if channels else [])
            if candidates < DEFAULT_K:
                needs.append("k")
            channel = (
                _NULL
                if channels is None
                else {"type": "integer", "minimum": 0, "maximum": channels - 1}
            )
            parameters = {
                "layer": {"type": "integer", "enum": [layer]},
                "k": k if "k" in needs else _nullable(k),
                "channel": channel,
                "method": method,
            }
            branches.append(_branch(image, parameters, outputs, needs))
    return branches


def infer_body(model, max_files: int) -> dict:
    """The JSON request body ``model`` answers with 200 (given data that fits each shape)."""
    if model.kind == "vae":
        branches = _vae_branches(model, max_files)
    elif model.kind in ("network", "classifier"):
        branches = _visualise_branches(model, max_files)
    else:
        outputs = ["reconstruction"]
        branches = [_branch([_image(model, max_files)], {}, outputs)]
    return branches[0] if len(branches) == 1 else {"anyOf": branches}


def _name_and_version(operation: dict, names: list[str]) -> None:
    for parameter in operation.get("parameters", []):
        if parameter["name"] == "version":
            parameter["schema"] = {"type": "string", "enum": ["1"]}
        if parameter["name"] == "name" and names:
            parameter["schema"] = {"type": "string", "enum": names}


def narrow_v2(paths: dict, models, settings) -> None:
    """The model routes name the loaded models (others answer 404), and the generic infer
    paths become one per loaded model (none: no infer path)."""
    names = sorted(m.name for m in models if m.available)
    for path, item in paths.items():
        if path.startswith("/v2/models/{name}") and "get" in item:
            _name_and_version(item["get"], names)
    generic, versioned = paths.pop(_INFER, None), paths.pop(_INFER_VERSION, None)
    if generic is None:
        return
    for model in sorted(models, key=lambda m: m.name):
        if not model.available:  # loading: its shapes are not known yet
            continue
        body = infer_body(model, settings.max_files)
        for template, operation in ((_INFER, generic), (_INFER_VERSION, versioned)):
            if operation is None:
                continue
            concrete = copy.deepcopy(operation)
            post = concrete["post"]
            post["operationId"] = f"{post['operationId']}_{model.name}"
            post["parameters"] = [p for p in post.get("parameters", []) if p["name"] != "name"]
            _name_and_version(post, names)
            content = post["requestBody"]["content"]["application/json"]
            content["schema"] = copy.deepcopy(body)
            paths[template.replace("{name}", model.name)] = concrete
