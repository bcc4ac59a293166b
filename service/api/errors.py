"""Errors over HTTP: every failure is JSON ``{"error": "<stable code>", "detail": "<what, how to
fix>"}``. ``ERRORS`` is the one table of codes: their status and meaning. The handlers send
only its codes, the OpenAPI document lists them by status, and docs/errors.md's table is checked
against it (tests/test_readme.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from ..engine.errors import ErrorCode, RequestError

log = logging.getLogger("unconv")


@dataclass(frozen=True)
class ErrorKind:
    status: int
    meaning: str


ERRORS: dict[ErrorCode, ErrorKind] = {
    ErrorCode.INVALID_IMAGE: ErrorKind(400, "The image is empty, undecodable or truncated"),
    ErrorCode.INVALID_FORM: ErrorKind(400, "The multipart form body is malformed"),
    ErrorCode.BAD_REQUEST: ErrorKind(400, "The HTTP request itself is malformed"),
    ErrorCode.BAD_INFERENCE_REQUEST: ErrorKind(
        400, "A v2 inference request's tensors or parameters do not match the model"
    ),
    ErrorCode.LOAD_FAILED: ErrorKind(
        400, "The checkpoint does not load; the model loaded before keeps serving"
    ),
    ErrorCode.UNAUTHORIZED: ErrorKind(
        401, "The X-API-Key header is missing or wrong (only when UNCONV_API_KEY is set)"
    ),
    ErrorCode.REPOSITORY_DISABLED: ErrorKind(
        403, "Loading and unloading models is off (UNCONV_MODEL_CONTROL=explicit turns it on)"
    ),
    ErrorCode.UNKNOWN_MODEL: ErrorKind(404, "No model of that name"),
    ErrorCode.MODEL_NOT_LOADED: ErrorKind(
        404, "A v2 route's model is not loaded (unavailable or unloaded); `detail` says why"
    ),
    ErrorCode.NOT_FOUND: ErrorKind(404, "No such route"),
    ErrorCode.NO_ATLAS: ErrorKind(
        404, "The network has no feature atlas served (none built, or stale); `detail` says why"
    ),
    ErrorCode.NOT_IN_ATLAS: ErrorKind(404, "The atlas holds no such layer or feature map"),
    ErrorCode.METHOD_NOT_ALLOWED: ErrorKind(405, "The route does not take that method"),
    ErrorCode.PAYLOAD_TOO_LARGE: ErrorKind(
        413, "The body or the number of files is over its limit"
    ),
    ErrorCode.IMAGE_TOO_LARGE: ErrorKind(413, "An image's pixel count is over its limit"),
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: ErrorKind(
        415, "Not a multipart form, or the upload is not a PNG, JPEG or WebP image"
    ),
    ErrorCode.INVALID_PARAMETERS: ErrorKind(
        422, "A parameter is invalid; `detail` names it and what is allowed"
    ),
    ErrorCode.CLIENT_CLOSED_REQUEST: ErrorKind(
        499, "The client disconnected before the answer was ready (it never sees this)"
    ),
    ErrorCode.INTERNAL_ERROR: ErrorKind(500, "A bug; it has been logged"),
    ErrorCode.NOT_READY: ErrorKind(503, "The models are still loading"),
    ErrorCode.MODEL_UNAVAILABLE: ErrorKind(503, "The model cannot be loaded; `detail` says why"),
    ErrorCode.OVERLOADED: ErrorKind(503, "The model's queue is full"),
    ErrorCode.SHUTTING_DOWN: ErrorKind(503, "The service is shutting down"),
    ErrorCode.TIMEOUT: ErrorKind(
        504, "The request's deadline (UNCONV_REQUEST_TIMEOUT_S) passed before it ran"
    ),
}

# the code for an error Starlette or FastAPI raise themselves, by status
_FRAMEWORK_CODES = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    422: ErrorCode.INVALID_PARAMETERS,
}

# what FastAPI answers when a JSON body cannot be parsed for another reason than its syntax
_FASTAPI_UNPARSED_BODY = "There was an error parsing the body"


def codes_by_status() -> dict[int, list[str]]:
    """Every status the service answers with an error, and the codes it may carry."""
    by_status: dict[int, list[str]] = {}
    for code, kind in ERRORS.items():
        by_status.setdefault(kind.status, []).append(code.value)
    return by_status


def error_response(
    code: ErrorCode | str, detail: str, headers: dict | None = None, path: str = ""
) -> JSONResponse:
    """The error as JSON; under ``/v2/`` in the Open Inference Protocol's form, whose
    ``error`` is the message (clients such as tritonclient show it), with the code beside it."""
    code = ErrorCode(code)
    body = {"error": code.value, "detail": detail}
    if path.startswith("/v2/"):
        body = {"error": detail, "code": code.value}
    return JSONResponse(body, status_code=ERRORS[code].status, headers=headers)


def request_error_response(err: RequestError, path: str = "") -> JSONResponse:
    headers = {}
    if err.retry_after is not None:
        headers["Retry-After"] = str(err.retry_after)
    if err.code is ErrorCode.UNAUTHORIZED:
        headers["WWW-Authenticate"] = "ApiKey"
    return error_response(err.code, err.detail, headers or None, path)


def _location(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return ".".join(parts) or "body"


def describe_validation_error(exc: RequestValidationError | ValidationError) -> str:
    """FastAPI's or pydantic's list of errors as one line, e.g. ``layer: Input should be ...``."""
    return "; ".join(f"{_location(e['loc'])}: {e['msg']}" for e in exc.errors())


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError):
        return request_error_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        detail = describe_validation_error(exc)
        return error_response(ErrorCode.INVALID_PARAMETERS, detail, path=request.url.path)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 400 and detail == _FASTAPI_UNPARSED_BODY:
            # a JSON body that is not UTF-8 or nests deeper than the parser goes; broken JSON
            # is a 422 already, and so is this
            return error_response(
                ErrorCode.INVALID_PARAMETERS,
                "body: not a JSON document (UTF-8, nested at most a few hundred levels deep)",
            )
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}; see /docs"
        code = _FRAMEWORK_CODES.get(exc.status_code)
        if code is None:  # a status the table does not know is a bug of ours
            log.error("unexpected HTTP %d in %s: %s", exc.status_code, request.url.path, detail)
            code, detail = ErrorCode.INTERNAL_ERROR, "the server failed; this is a bug"
        return error_response(code, detail, getattr(exc, "headers", None), request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        return error_response(
            ErrorCode.INTERNAL_ERROR,
            "the server failed; this is a bug and it has been logged",
            path=request.url.path,
        )
