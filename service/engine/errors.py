"""Why a request cannot be answered: a stable code, a detail that says how to fix it, and, for
a refusal that passes, how long to wait. The HTTP layer maps each code to its status
(``service/api/errors.py``); the engine never names a status."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Every error code a client can receive, engine's and HTTP layer's alike."""

    BAD_REQUEST = "bad_request"
    BAD_INFERENCE_REQUEST = "bad_inference_request"
    INVALID_IMAGE = "invalid_image"
    INVALID_FORM = "invalid_form"
    UNAUTHORIZED = "unauthorized"
    UNKNOWN_MODEL = "unknown_model"
    MODEL_NOT_LOADED = "model_not_loaded"
    REPOSITORY_DISABLED = "repository_disabled"
    LOAD_FAILED = "load_failed"
    NOT_FOUND = "not_found"
    NO_ATLAS = "no_atlas"
    NOT_IN_ATLAS = "not_in_atlas"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    IMAGE_TOO_LARGE = "image_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    INVALID_PARAMETERS = "invalid_parameters"
    CLIENT_CLOSED_REQUEST = "client_closed_request"
    INTERNAL_ERROR = "internal_error"
    NOT_READY = "not_ready"
    MODEL_UNAVAILABLE = "model_unavailable"
    OVERLOADED = "overloaded"
    SHUTTING_DOWN = "shutting_down"
    TIMEOUT = "timeout"


class RequestError(Exception):
    """A request that cannot be answered.

    Parameters
    ----------
    code : ErrorCode or str
        The stable code (a member of ``ErrorCode``; anything else is a bug, raised at once).
    detail : str
        What was wrong and how to fix it.
    retry_after : int, optional
        Seconds after which the same request may succeed.
    """

    def __init__(self, code: ErrorCode | str, detail: str, retry_after: int | None = None):
        super().__init__(detail)
        self.code, self.detail, self.retry_after = ErrorCode(code), detail, retry_after


def invalid_parameters(detail: str) -> RequestError:
    return RequestError(ErrorCode.INVALID_PARAMETERS, detail)


def shutting_down() -> RequestError:
    """The answer to every request that arrives while the service shuts down."""
    return RequestError(
        ErrorCode.SHUTTING_DOWN, "the service is shutting down; retry on another replica", 1
    )


def not_ready(what: str) -> RequestError:
    """The answer while ``what`` (the models, one model) is still loading."""
    return RequestError(ErrorCode.NOT_READY, f"{what} still loading; retry shortly", 2)
