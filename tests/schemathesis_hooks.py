"""Schemathesis hooks for fuzzing the service: ``SCHEMATHESIS_HOOKS=tests.schemathesis_hooks``.

Two things JSON Schema cannot say, and the fuzzer must know to send valid requests:

- an upload whose part says ``image/png`` must *be* a PNG: every image part gets a real image
  (PNG, JPEG or WebP, in the modes Pillow writes, 1 to 40 pixels a side);
- ``/generate``'s ``mean`` and ``log_var`` hold 1 or the same number n of vectors, and ``n``,
  when given with them, is that number (equal lengths across fields are beyond JSON Schema).
  Bodies that break this are answered 422 (tested in tests/test_api_generate.py); here they
  are kept out of the *positive* cases only, so negative ones still probe them; likewise
  ``n`` with ``labels`` is their number;

- a v2 inference request's tensor ``data`` holds as many values as its ``shape`` says: the
  valid requests get data drawn to fit (``map_case``).

And quirks of schemathesis: its coverage scenario "multipart body with custom encoding"
sends the required ``layer`` of /visualise as an empty string, which is no integer (the
service reads an empty field as absent, as browsers send them, and then asks for ``layer``);
its coverage phase calls a body with the file alone positive for /attribute, whose every
field is optional, where the served networks' branches (``anyOf``) require ``network`` when
the default network is not served: positive /attribute bodies are checked against the whole
schema; and a "negative" form body is judged by the schema as generated, not as sent: a field
made an array of no item or one goes out as no part or one part, which may be a valid request
(an optional field absent, or its one value), so such bodies are no negative cases here.
"""

from __future__ import annotations

import io
import re

import jsonschema
import numpy as np
import schemathesis
from hypothesis import strategies as st
from PIL import Image

# (format, modes it can store)
_FORMATS = {
    "image/png": ("PNG", ("1", "L", "LA", "P", "RGB", "RGBA", "I;16")),
    "image/jpeg": ("JPEG", ("L", "RGB", "CMYK")),
    "image/webp": ("WEBP", ("RGB", "RGBA")),
}


@st.composite
def _images(draw, media_type: str) -> bytes:
    fmt, modes = _FORMATS[media_type]
    mode = draw(st.sampled_from(modes))
    width, height = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    bands = len(Image.new(mode, (1, 1)).getbands())
    if mode == "I;16":
        pixels = rng.integers(0, 2**16, (height, width), dtype=np.uint16)
        image = Image.frombytes("I;16", (width, height), pixels.astype("<u2").tobytes())
    else:
        pixels = rng.integers(0, 256, (height, width, bands), dtype=np.uint8)
        image = Image.fromarray(pixels.squeeze(-1) if bands == 1 else pixels)
        image = image.convert(mode) if mode in ("1", "P") else image
        if image.mode != mode:
            image = Image.frombytes(mode, image.size, pixels.tobytes())
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


for _media_type in _FORMATS:
    schemathesis.openapi.media_type(_media_type, _images(_media_type))


def _consistent_counts(body: dict) -> bool:
    counts = {
        len(rows)
        for rows in (body.get("mean"), body.get("log_var"))
        if isinstance(rows, list) and len(rows) > 1
    }
    if len(counts) > 1:
        return False
    return not counts or "n" not in body or body["n"] in counts


def _consistent_labels(body: dict) -> bool:
    labels = body.get("labels")
    return not isinstance(labels, list) or body.get("n") in (None, len(labels))


def _valid_form(case) -> bool:
    """Whether the multipart body the service receives meets its schema (files stand in as
    text). A list in a field that is no array goes out as one part per item (OpenAPI's
    multipart encoding, which schemathesis follows): no item is no part, the field absent;
    one item is that value; more are the field repeated, which the service refuses."""
    content = case.operation.definition.raw["requestBody"]["content"]
    schema = content["multipart/form-data"]["schema"]
    sent = {}
    for name, value in case.body.items():
        if isinstance(value, list) and not _is_array(schema["properties"].get(name, {})):
            if len(value) > 1:
                return False
            if not value:
                continue
            value = value[0]
        if isinstance(value, list):
            value = ["file" if isinstance(item, bytes) else item for item in value]
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
            value = int(value)  # every part is text: the service reads digits as a number
        sent[name] = "file" if isinstance(value, bytes) else value
    return jsonschema.Draft202012Validator(schema).is_valid(sent)


def _is_array(schema: dict) -> bool:
    return any(s.get("type") == "array" for s in (schema, *schema.get("anyOf", ())))


def _is_form(case) -> bool:
    body = case.operation.definition.raw.get("requestBody", {})
    return "multipart/form-data" in body.get("content", {})


def _is_infer(case) -> bool:
    return case.operation.path.startswith("/v2/models/") and case.operation.method.lower() == "post"


def _valid_json(case) -> bool:
    schema = case.operation.definition.raw["requestBody"]["content"]["application/json"]
    return jsonschema.Draft202012Validator(schema["schema"]).is_valid(case.body)


@schemathesis.hook
def filter_case(context, case) -> bool:
    meta = case.meta
    if meta is None or not isinstance(case.body, dict):
        return True
    if not meta.generation.mode.is_positive:
        # schemathesis can break one branch of an anyOf and call the body invalid while
        # another branch holds, or make a field an array that goes out as no part or one:
        # what is sent is then valid, and no negative case
        if _is_infer(case):
            return not _valid_json(case)
        return not _is_form(case) or not _valid_form(case)
    if case.operation.path == "/generate":
        return _consistent_counts(case.body) and _consistent_labels(case.body)
    if case.operation.path == "/visualise":
        return case.body.get("layer") != ""
    if case.operation.path == "/attribute":
        return _valid_form(case)
    return True


@schemathesis.hook
def map_case(context, case):
    """A valid inference request's tensors hold as many values as their shapes say (JSON
    Schema cannot tie the two): each input's data is drawn again to fit its shape, within the
    value range its schema states."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or not _is_infer(case):
        return case
    if not isinstance(case.body, dict) or not isinstance(case.body.get("inputs"), list):
        return case
    rng = np.random.default_rng(len(case.body["inputs"]))
    for tensor in case.body["inputs"]:
        shape = tensor.get("shape") if isinstance(tensor, dict) else None
        if isinstance(shape, list) and all(
            isinstance(d, (int, float)) and not isinstance(d, bool) and d >= 1 for d in shape
        ):
            high = 1.0 if tensor.get("name") == "image" else 3.0
            low = 0.0 if tensor.get("name") == "image" else -3.0
            tensor["data"] = (
                rng.uniform(low, high, int(np.prod([int(d) for d in shape]))).round(4).tolist()
            )
    return case
