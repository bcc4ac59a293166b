"""Errors: every failure is JSON ``{"error": "<stable code>", "detail": "<what, how to fix>"}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

log = logging.getLogger("unconv")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_parameters",
    504: "timeout",
}

# what FastAPI answers when a JSON body cannot be parsed for another reason than its syntax
_FASTAPI_UNPARSED_BODY = "There was an error parsing the body"


class ServiceError(Exception):
    """A request that cannot be answered, with its status, stable code and a helpful detail."""

    def __init__(self, status: int, code: str, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


def shutting_down() -> ServiceError:
    """The answer to every request that arrives while the service shuts down."""
    return ServiceError(
        503,
        "shutting_down",
        "the service is shutting down; retry on another replica",
        {"Retry-After": "1"},
    )


def error_response(status: int, code: str, detail: str, headers: dict | None = None):
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def _location(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return ".".join(parts) or "body"


def describe_validation_error(exc: RequestValidationError | ValidationError) -> str:
    """FastAPI's or pydantic's list of errors as one line, e.g. ``layer: Input should be ...``."""
    return "; ".join(f"{_location(e['loc'])}: {e['msg']}" for e in exc.errors())


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError):
        return error_response(exc.status, exc.code, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        return error_response(422, "invalid_parameters", describe_validation_error(exc))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        code = _CODES.get(exc.status_code, "error")
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 400 and detail == _FASTAPI_UNPARSED_BODY:
            # a JSON body that is not UTF-8 or nests deeper than the parser goes; broken JSON
            # is a 422 already, and so is this
            return error_response(
                422,
                "invalid_parameters",
                "body: not a JSON document (UTF-8, nested at most a few hundred levels deep)",
            )
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}; see /docs"
        return error_response(exc.status_code, code, detail, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        return error_response(
            500, "internal_error", "the server failed; this is a bug and it has been logged"
        )
