"""Triton's model-repository extension: the index of the models the service knows, and, when
UNCONV_MODEL_CONTROL=explicit, loading a model from its files again (a retrained checkpoint is
served without a restart) and unloading one.

A load builds the new model and its batcher off the event loop, then swaps them in one step;
the requests the old batcher accepted are answered by it before it stops. A checkpoint that
does not load leaves the old model serving (``load_failed``). The call answers once the worker
process it reached has swapped; each other worker swaps before its next request
(``Engine.follow``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import ValidationError

from ..engine import Engine, ErrorCode, ModelState, RequestError
from .contract import error_responses
from .serving import engine_of
from .v2_schemas import RepositoryModel, RepositoryRequest, V2ErrorResponse

router = APIRouter(tags=["v2"])
_STATES = {
    ModelState.AVAILABLE: "READY",
    ModelState.LOADING: "LOADING",
    ModelState.UNAVAILABLE: "UNAVAILABLE",
}


def _v2_errors(*statuses: int) -> dict:
    responses = error_responses(*statuses)
    for status in responses:
        responses[status]["model"] = V2ErrorResponse
    return responses


_ERRORS = _v2_errors(400, 401, 403, 404, 422, 500, 503)


def _entry(model) -> RepositoryModel:
    reason = "" if model.available else (model.reason or "still loading")
    return RepositoryModel(name=model.name, version="1", state=_STATES[model.state], reason=reason)


@router.post(
    "/v2/repository/index", response_model=list[RepositoryModel], responses=_v2_errors(401, 500)
)
async def repository_index(request: Request) -> list[RepositoryModel]:
    """Every model the service knows, with its state (READY, LOADING, UNAVAILABLE) and why."""
    engine = engine_of(request)
    return [_entry(m) for m in sorted(engine.models.values(), key=lambda m: m.name)]


def _control(engine: Engine) -> None:
    if engine.settings.model_control != "explicit":
        raise RequestError(
            ErrorCode.REPOSITORY_DISABLED,
            "loading and unloading models is off; start the service with "
            "UNCONV_MODEL_CONTROL=explicit (and UNCONV_API_KEY set) to turn it on",
        )


_BODY = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": RepositoryRequest.model_json_schema()}},
    }
}


_MODEL_ROUTE = {"response_model": RepositoryModel, "responses": _ERRORS, "openapi_extra": _BODY}


async def _parameters(request: Request, allowed: set[str]) -> None:
    """Refuse what the request's ``parameters`` ask for beyond ``allowed``. Triton's clients send
    JSON without a Content-Type, and no body means no parameters."""
    raw = await request.body()
    try:
        given = RepositoryRequest.model_validate_json(raw).parameters if raw.strip() else None
    except ValidationError as err:
        raise RequestError(
            ErrorCode.INVALID_PARAMETERS,
            "the body must be a JSON object with an optional 'parameters' object: "
            + err.errors()[0]["msg"],
        ) from None
    unknown = sorted(set(given or {}) - allowed)
    if unknown:
        accepted = f" (it accepts {', '.join(sorted(allowed))})" if allowed else ""
        raise RequestError(
            ErrorCode.INVALID_PARAMETERS,
            f"{request.url.path.rsplit('/', 1)[-1]} takes no parameter "
            f"{', '.join(map(repr, unknown))}{accepted}: a model is loaded from its checkpoint "
            "in UNCONV_CHECKPOINT_DIR, never from the request",
        )


@router.post("/v2/repository/models/{name}/load", **_MODEL_ROUTE)
async def load_model(name: str, request: Request) -> RepositoryModel:
    """Load a model from its files again (or for the first time) and serve it."""
    engine = engine_of(request)
    _control(engine)
    await _parameters(request, set())
    return _entry(await engine.reload(name))


@router.post("/v2/repository/models/{name}/unload", **_MODEL_ROUTE)
async def unload_model(name: str, request: Request) -> RepositoryModel:
    """Stop serving a model, once the requests it accepted are answered."""
    engine = engine_of(request)
    _control(engine)
    await _parameters(request, {"unload_dependents"})
    await engine.unload(name)
    return _entry(engine.models[name])
