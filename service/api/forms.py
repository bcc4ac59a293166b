"""Multipart form bodies (RFC 7578): the uploaded images and the fields that go with them.

The body is read whole (``BodyLimitMiddleware`` bounds it), so every part is a slice of it.
Starlette's form parser streams it instead, wrapping each file in a spooled temporary file, and
FastAPI then solves each form field as a dependency: a large share of the event loop's time per
upload (docs/performance.md). The syntax follows RFC 2046 5.1.1 and RFC 7578;
tests/service/api/test_forms_differential.py reads generated bodies with python-multipart too
and names each case where the two differ. Field values are validated by the pydantic form
models of ``schemas.py``, so errors read as they do for JSON bodies.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar
from urllib.parse import parse_qsl

from pydantic import BaseModel, ValidationError
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from ..engine.errors import RequestError
from ..engine.imaging import Upload
from .errors import describe_validation_error

Fields = TypeVar("Fields", bound=BaseModel)


@dataclass
class Form:
    fields: dict[str, str]
    files: dict[str, list[Upload]]


async def read_form(
    request: Request, model: type[Fields], file_field: str = "file"
) -> tuple[Fields, list[Upload]]:
    """The validated fields and the uploads in ``file_field`` (at least one, none empty).

    Raises
    ------
    RequestError
        415 for a body that is not multipart/form-data, 400 for a malformed one or an empty
        upload, 422 for invalid, unknown or missing fields.
    """
    form = parse_form(await request.body(), request.headers.get("content-type"))
    # an empty input means "not given", as browsers send the empty inputs of a form
    values = {name: value for name, value in form.fields.items() if value != ""}
    values.pop(file_field, None)  # a text field in place of the file: reported below
    try:
        fields = model.model_validate(values)
    except ValidationError as err:
        raise RequestError("invalid_parameters", describe_validation_error(err)) from None
    unexpected = sorted(form.files.keys() - {file_field})
    if unexpected:
        raise _invalid_parameters(
            f"{unexpected[0]}: unexpected file; send images in the field '{file_field}'"
        )
    uploads = form.files.get(file_field)
    if not uploads:
        given = "a text field, not a file" if file_field in form.fields else "Field required"
        raise _invalid_parameters(f"{file_field}: {given}")
    for upload in uploads:
        if not upload.data:
            raise RequestError(
                "invalid_image", f"the upload {upload.filename or file_field!r} is empty"
            )
    return fields, uploads


def parse_form(body: bytes, content_type: str | None) -> Form:
    """Split a multipart/form-data ``body`` into text fields and files."""
    media, params = _options(content_type or "")
    if media == b"application/x-www-form-urlencoded":  # fields only; the missing file is named
        return _urlencoded(body)
    if media != b"multipart/form-data":
        raise RequestError(
            "unsupported_media_type",
            "expected a multipart/form-data body with the image in the field 'file', not "
            f"{media.decode('latin-1') or 'a body without a content type'}",
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise _malformed("the multipart/form-data content type has no boundary")
    form, repeated = Form({}, {}), set()
    for part in _parts(body, boundary):
        _add_part(form, part, repeated)
    # a malformed body is a 400 wherever it breaks; a repeated field, in a well-formed one, a 422
    if repeated:
        raise _invalid_parameters(f"{min(repeated)}: given more than once")
    return form


def _parts(body: bytes, boundary: bytes) -> list[bytes]:
    """The parts between the preamble and the close delimiter (RFC 2046 5.1.1).

    Every delimiter line but a first one at the very start follows a line break. A line that
    begins with the boundary is a delimiter line: only white space may follow the boundary on
    it, or ``--`` on the last, after which comes the epilogue, ignored.
    """
    parts = []
    for section in (b"\r\n" + body).split(b"\r\n--" + boundary)[1:]:
        if section.startswith(b"--"):
            return parts
        line, crlf, part = section.partition(b"\r\n")
        if not crlf:
            break
        if line.strip(b" \t"):
            raise _malformed(f"a line begins with the boundary but goes on: {line[:40]!r}")
        parts.append(part)
    raise _malformed("the closing boundary is missing; the body is truncated")


def _urlencoded(body: bytes) -> Form:
    form = Form({}, {})
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise _malformed("the form is not UTF-8 text") from None
    for name, value in pairs:
        if name in form.fields:
            raise _invalid_parameters(f"{name}: given more than once")
        form.fields[name] = value
    return form


def _add_part(form: Form, part: bytes, repeated: set[str]) -> None:
    head, data = _split_part(part)
    headers = _headers(head)
    disposition, params = _options(headers.get(b"content-disposition", b""))
    if disposition != b"form-data" or b"name" not in params:
        raise _malformed('a part lacks the header Content-Disposition: form-data; name="..."')
    coding = headers.get(b"content-transfer-encoding", b"binary")
    if coding.lower() not in IDENTITY:  # RFC 7578 4.7: form parts are sent as they are
        raise _malformed(f"a part has the Content-Transfer-Encoding {coding[:40]!r}")
    name = params[b"name"].decode("utf-8", "replace")
    content_type = headers.get(b"content-type")
    # a file part has a filename, or at least a type other than text (RFC 7578 4.2, 4.4)
    media = _options(content_type)[0] if content_type else b"text/plain"
    if b"filename" in params or not media.startswith(b"text/"):
        filename = params.get(b"filename", b"").decode("utf-8", "replace") or None
        content = content_type.decode("latin-1") if content_type else None
        form.files.setdefault(name, []).append(Upload(data, content, filename))
        return
    try:
        value = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed(f"the field {name!r} is not UTF-8 text") from None
    if name in form.fields:
        repeated.add(name)
    form.fields[name] = value


def _split_part(part: bytes) -> tuple[bytes, bytes]:
    """A part's header lines and its data. A blank line ends the headers, or the part ends with
    them (RFC 2046 5.1.1: ``body-part := MIME-part-headers [CRLF *OCTET]``)."""
    if part.startswith(b"\r\n"):
        return b"", part[2:]
    head, blank, data = part.partition(b"\r\n\r\n")
    if blank:
        return head, data
    if part.endswith(b"\r\n"):
        return part[:-2], b""
    raise _malformed("a part has no blank line after its headers")


def _headers(head: bytes) -> dict[bytes, bytes]:
    """Header fields by lower-case name."""
    headers = {}
    for line in head.split(b"\r\n") if head else ():
        name, colon, value = line.partition(b":")
        if not colon or b"\r" in line or b"\n" in line:  # RFC 5322 2.2: lines end in CRLF
            raise _malformed(f"a part has a malformed header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip(b" \t")
    return headers


IDENTITY = (b"binary", b"8bit", b"7bit")


def _options(value: str | bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """``parse_options_header``, remembered for the short values that repeat from request to
    request (a client's content type and boundary, each field's disposition), whose parsing
    showed in the event loop's profile. The answer is shared: read it, never change it.
    """
    return _remembered_options(value) if len(value) <= 200 else parse_options_header(value)


_remembered_options = lru_cache(maxsize=512)(parse_options_header)


def _malformed(detail: str) -> RequestError:
    return RequestError("invalid_form", f"malformed form body: {detail}")


def _invalid_parameters(detail: str) -> RequestError:
    return RequestError("invalid_parameters", detail)


IMAGE_MEDIA_TYPES = "image/png, image/jpeg, image/webp"


def openapi_form(model: type[BaseModel], files: str, many: bool = False) -> dict:
    """The OpenAPI ``requestBody`` of a route that reads its form with ``read_form``."""
    schema = model.model_json_schema()
    for name, field in schema["properties"].items():
        _drop_null(field)
        if name not in schema.get("required", []):
            _empty_is_default(field)
    binary = {"type": "string", "format": "binary", "minLength": 1, "description": files}
    file = (
        {"type": "array", "items": binary, "minItems": 1, "description": files} if many else binary
    )
    schema["properties"] = {"file": file, **schema["properties"]}
    schema["required"] = ["file", *schema.get("required", [])]
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": schema,
                    "encoding": {"file": {"contentType": IMAGE_MEDIA_TYPES}},
                }
            },
        }
    }


def _empty_is_default(field: dict) -> None:
    """An optional field may be sent empty, as browsers send an empty input: the default."""
    keep = ("title", "description", "default")
    value = {key: field.pop(key) for key in list(field) if key not in keep}
    field["anyOf"] = [value, {"type": "string", "maxLength": 0}]


def form_value_schema(field: dict) -> dict:
    """The schema of a form field's non-empty values."""
    return field["anyOf"][0] if "anyOf" in field else field


def _drop_null(field: dict) -> None:
    """A form field cannot be null: it is absent (or empty) when not given."""
    options = [option for option in field.pop("anyOf", []) if option.get("type") != "null"]
    if len(options) == 1:
        field.update(options[0])
    elif options:
        field["anyOf"] = options
