"""Bodies of the Open Inference Protocol (KServe v2) routes. The inference request is described
by ``InferenceRequest`` and parsed by ``v2_codec`` (it may carry binary data after the JSON)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

Parameters = dict[str, bool | int | float | str]


class V2ErrorResponse(BaseModel):
    """An error under /v2/, in the protocol's form."""

    error: str = Field(description="What was wrong and how to fix it")
    code: str = Field(description="Stable machine-readable code, e.g. `bad_inference_request`")


class ServerMetadata(BaseModel):
    """GET /v2."""

    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    """One input or output of a model; -1 in a shape stands for any size."""

    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    """GET /v2/models/{name}: the tensors a model takes and answers."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="The model's kind and what it was loaded from"
    )


class ModelReady(BaseModel):
    """GET /v2/models/{name}/ready, when it is."""

    name: str
    ready: bool


class RequestInput(BaseModel):
    """An input tensor: ``data`` row-major (flat or nested), or ``binary_data_size`` bytes of
    the binary part."""

    name: str
    shape: list[Annotated[int, Field(ge=1)]]
    datatype: str
    parameters: Parameters | None = None
    data: list[Any] | None = None


class RequestOutput(BaseModel):
    """An output asked for; ``parameters.binary_data`` sends it as binary data."""

    name: str
    parameters: Parameters | None = None


class InferenceRequest(BaseModel):
    """POST /v2/models/{name}/infer."""

    id: str | None = None
    parameters: Parameters | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = None
    data: list[Any] | None = None


class InferenceResponse(BaseModel):
    """The answer of an inference request, when every output is JSON."""

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]


class RepositoryModel(BaseModel):
    """A model of the repository index: READY, LOADING or UNAVAILABLE, and why not ready."""

    name: str
    version: str
    state: str
    reason: str


class RepositoryRequest(BaseModel):
    """Triton's load and unload bodies. A model is loaded from the service's own checkpoint
    directory: load's ``config`` and ``file:<path>`` parameters (a model sent in the request) are
    refused rather than ignored; unload's ``unload_dependents`` is accepted (no model depends on
    another)."""

    parameters: dict[str, Any] | None = None


def inline_schema(model: type[BaseModel]) -> dict:
    """``model``'s JSON schema with its nested models written in place, for a request body of
    the OpenAPI document (where ``#/$defs/...`` would not resolve)."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node):
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(definitions[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)
