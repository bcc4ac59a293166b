"""Tensors of the Open Inference Protocol (KServe v2) in and out: the JSON request with its
inputs checked against a model's metadata, the binary tensor data extension as Triton speaks
it, and the response with each output as JSON ``data`` or as binary data after the JSON.

Binary data (``Inference-Header-Content-Length: <n>``): the body's first ``n`` bytes are the
JSON request, the rest the inputs' raw bytes (little-endian, row-major) in input order, each
input saying how many it takes (``parameters.binary_data_size``). An output asked for with
``parameters.binary_data`` (or every output, with the request parameter
``binary_data_output``) comes back the same way.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine.errors import ErrorCode, RequestError

HEADER_LENGTH = "Inference-Header-Content-Length"
# the datatypes this service speaks, as the protocol names them, little-endian
DATATYPES: dict[str, np.dtype] = {
    "FP32": np.dtype("<f4"),
    "INT64": np.dtype("<i8"),
}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model: its name, datatype and shape (-1: any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    description: str = ""

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass
class InferRequest:
    """A parsed inference request: its inputs, the outputs it asks for and its parameters."""

    inputs: dict[str, np.ndarray]
    parameters: dict[str, Any]
    # output name -> whether it goes back as binary data; None: every output, as ``binary``
    outputs: dict[str, bool] | None = None
    binary: bool = False
    id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def bad_request(detail: str) -> RequestError:
    """The protocol's 400 for a request that does not match the model or the protocol."""
    return RequestError(ErrorCode.BAD_INFERENCE_REQUEST, detail)


def _object(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise bad_request(f"{what}: expected a JSON object but received {type(value).__name__}")
    return value


def integral(value: Any) -> Any:
    """JSON Schema's integer: 2 and 2.0 are both 2; anything else is left as it is."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _optional_object(value: Any, what: str) -> dict:
    return {} if value is None else _object(value, what)


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON part and the binary part of a body."""
    if header_length is None:
        return body, b""
    if not header_length.strip().isdigit() or int(header_length) > len(body):
        raise bad_request(
            f"{HEADER_LENGTH}: expected the length of the JSON part, at most the body's "
            f"{len(body)} bytes, but received {header_length!r}"
        )
    return body[: int(header_length)], body[int(header_length) :]


def _document(text: bytes) -> dict:
    try:
        document = json.loads(text)
    except (UnicodeDecodeError, ValueError) as err:
        raise bad_request(f"the request is not a JSON document: {err}") from None
    return _object(document, "the request")


def parse_request(body: bytes, header_length: str | None, specs: dict[str, TensorSpec]):
    """
    Parse an inference request and check its inputs against ``specs`` (name -> spec).

    Returns
    -------
    InferRequest
        Every input as a numpy array of its spec's datatype and the request's shape.

    Raises
    ------
    RequestError
        ``bad_inference_request`` (400) for anything that does not match: an unknown input, a
        datatype or shape other than the spec's, data longer or shorter than the shape, a
        binary part longer or shorter than the inputs say.
    """
    text, binary = _split(body, header_length)
    document = _document(text)
    inputs = document.get("inputs", [])
    if not isinstance(inputs, list):
        raise bad_request("inputs: expected a list of tensors")
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for i, tensor in enumerate(inputs):
        tensor = _object(tensor, f"inputs[{i}]")
        name = tensor.get("name")
        if not isinstance(name, str) or name not in specs:
            raise bad_request(f"unknown input {name!r}; this model takes {sorted(specs)}")
        if name in arrays:
            raise bad_request(f"input {name!r} is given twice")
        arrays[name], offset = _input(tensor, specs[name], binary, offset)
    if offset != len(binary):
        raise bad_request(
            f"the binary part has {len(binary)} bytes but the inputs' binary_data_size "
            f"add up to {offset}; {HEADER_LENGTH} or a binary_data_size is wrong"
        )
    parameters = _optional_object(document.get("parameters"), "parameters")
    binary_output = parameters.pop("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise bad_request("parameters.binary_data_output: expected true or false")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise bad_request("id: expected a string")
    return InferRequest(
        arrays, parameters, _requested_outputs(document, binary_output), binary_output, request_id
    )


def _input(tensor: dict, spec: TensorSpec, binary: bytes, offset: int):
    """One input as an array, and where the next input's binary data starts."""
    name = spec.name
    shape, datatype = tensor.get("shape"), tensor.get("datatype")
    if datatype != spec.datatype:
        raise bad_request(
            f"input {name!r}: expected datatype {spec.datatype} but received {datatype!r}"
        )
    if isinstance(shape, list):  # JSON's integers: 2 and 2.0
        shape = [integral(d) for d in shape]
    if (
        not isinstance(shape, list)
        or len(shape) != len(spec.shape)
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape)
        or any(want not in (-1, got) for want, got in zip(spec.shape, shape, strict=True))
    ):
        raise bad_request(
            f"input {name!r}: expected shape {list(spec.shape)} (-1: any size of at least 1) "
            f"but received {shape!r}"
        )
    dtype = DATATYPES[spec.datatype]
    count = math.prod(shape)
    parameters = _optional_object(tensor.get("parameters"), f"input {name!r} parameters")
    unknown = sorted(set(parameters) - {"binary_data_size"})
    if unknown:
        raise bad_request(f"input {name!r}: unknown parameters {unknown}; only binary_data_size")
    size = parameters.get("binary_data_size")
    if size is not None:
        if "data" in tensor:
            raise bad_request(f"input {name!r}: give data or binary_data_size, not both")
        if not isinstance(size, int) or isinstance(size, bool) or size != count * dtype.itemsize:
            raise bad_request(
                f"input {name!r}: shape {shape} of {spec.datatype} takes "
                f"{count * dtype.itemsize} bytes but binary_data_size is {size!r}"
            )
        if offset + size > len(binary):
            raise bad_request(
                f"input {name!r}: binary_data_size is {size} but only {len(binary) - offset} "
                "bytes of binary data are left"
            )
        array = np.frombuffer(binary, dtype, count, offset).reshape(shape)
        return array.astype(dtype.newbyteorder("="), copy=True), offset + size
    if "data" not in tensor:
        raise bad_request(f"input {name!r}: no data (shared memory is not supported)")
    values = _flat(tensor["data"], spec.datatype, name)
    if len(values) != count:
        raise bad_request(
            f"input {name!r}: shape {shape} holds {count} values but data has {len(values)}"
        )
    return np.array(values, dtype=dtype.newbyteorder("=")).reshape(shape), offset


def _flat(data: Any, datatype: str, name: str) -> list:
    """The values of ``data`` (flat or nested lists) in row-major order, each checked."""
    number = (int, float) if datatype.startswith("FP") else (int,)
    flat: list = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, number) and not isinstance(item, bool):
            flat.append(item)
        else:
            raise bad_request(f"input {name!r}: expected {datatype} values but data holds {item!r}")
    return flat


def _requested_outputs(document: dict, binary_output: bool) -> dict[str, bool] | None:
    outputs = document.get("outputs")
    if outputs is None:
        return None
    if not isinstance(outputs, list):
        raise bad_request("outputs: expected a list of {name, parameters}")
    requested = {}
    for i, output in enumerate(outputs):
        output = _object(output, f"outputs[{i}]")
        parameters = _optional_object(output.get("parameters"), f"outputs[{i}].parameters")
        binary = parameters.get("binary_data", binary_output)
        if not isinstance(output.get("name"), str) or not isinstance(binary, bool):
            raise bad_request(f"outputs[{i}]: expected a name and binary_data true or false")
        requested[output["name"]] = binary
    return requested


def select_outputs(request: InferRequest, produced: list[str]) -> dict[str, bool]:
    """The outputs to answer (name -> binary), in the order asked for; 400 for one the
    request's inputs do not produce."""
    if request.outputs is None:
        return dict.fromkeys(produced, request.binary)
    unknown = [name for name in request.outputs if name not in produced]
    if unknown:
        raise bad_request(f"unknown outputs {unknown}; this request produces {produced}")
    return request.outputs


def encode_response(
    model: str,
    version: str,
    request: InferRequest,
    outputs: dict[str, tuple[str, np.ndarray]],
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """
    The response body and headers: ``outputs`` (name -> (datatype, array)), each as JSON
    data or binary data as the request asked.
    """
    wanted = select_outputs(request, list(outputs))
    tensors, chunks = [], []
    for name, binary in wanted.items():
        datatype, array = outputs[name]
        array = np.ascontiguousarray(array, dtype=DATATYPES[datatype])
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            chunks.append(array.tobytes())
            tensor["parameters"] = {"binary_data_size": len(chunks[-1])}
        else:
            tensor["data"] = array.ravel().tolist()
        tensors.append(tensor)
    document: dict[str, Any] = {"model_name": model, "model_version": version}
    if request.id is not None:
        document["id"] = request.id
    if parameters:
        document["parameters"] = parameters
    document["outputs"] = tensors
    text = json.dumps(document, separators=(",", ":")).encode()
    if not chunks:
        return text, {"content-type": "application/json"}
    headers = {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(text))}
    return b"".join([text, *chunks]), headers
