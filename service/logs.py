"""Logs: lines for a terminal (the default), or one JSON object a line for a log collector
(``UNCONV_LOG_FORMAT=json``). Every line written while a request is served carries its
request ID and route, and the batch it rode in once it has run; nothing of a request's body or
headers is ever in a line but its ``X-Request-ID``.

The request's fields live in a context variable (``RequestContext``), set where the request
enters the app and read by the formatters, so that a log call anywhere in the request's task
gets them; the batcher keeps a reference to it and names the batch in it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TextIO

LogFormat = Literal["text", "json"]

REQUEST_ID_HEADER = "x-request-id"
# what a caller's ID may be: a token of the characters IDs are made of (UUIDs, trace IDs,
# ULIDs, base64), short enough for a log line; anything else is replaced, never echoed
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+/=-]{0,127}")

# the fields a record may carry (``extra=``) besides the request's, in the order written
_FIELDS = ("method", "path", "status", "duration_ms", "model", "items")


@dataclass(eq=False, slots=True)
class RequestContext:
    """What every log line about one request says of it.

    Attributes
    ----------
    request_id : str
        The caller's ``X-Request-ID`` when sane, else a new one; answered in the same header.
    route : str or None
        The route's template (``/v2/models/{name}/infer``), once the request is matched.
    batch : str or None
        The ID of the batch whose forward pass served the request, once it has run.
    """

    request_id: str
    route: str | None = None
    batch: str | None = None


_current: ContextVar[RequestContext | None] = ContextVar("unconv_request", default=None)


def request_id(given: bytes | str | None) -> str:
    """``given`` if it is a sane ID (a token of at most 128 characters), else a new random
    one (32 hexadecimal digits)."""
    if isinstance(given, bytes):
        given = given.decode("latin-1")
    if given is not None and _SANE_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


def current() -> RequestContext | None:
    """The request being served by the calling task or thread, if any."""
    return _current.get()


@contextmanager
def serving(context: RequestContext) -> Iterator[RequestContext]:
    """Log lines written in the block are about ``context``'s request."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def _fields(record: logging.LogRecord) -> dict[str, object]:
    """The request's fields and the record's own (``extra=``), those that are set."""
    fields: dict[str, object] = {}
    context = getattr(record, "request", None) or _current.get()
    if context is not None:
        fields["request_id"] = context.request_id
        if context.route is not None:
            fields["route"] = context.route
        if context.batch is not None:
            fields["batch"] = context.batch
    for name in _FIELDS:
        value = getattr(record, name, None)
        if value is not None:
            fields[name] = value
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, worker (the process ID),
    message, the request's fields, and the traceback of an exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "worker": os.getpid(),
            "message": record.getMessage(),
        }
        entry |= _fields(record)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger: message``, then the request's fields as ``name=value``."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = _fields(record)
        return " ".join([line, *(f"{k}={v}" for k, v in fields.items())]) if fields else line


def configure_logging(level: str, log_format: LogFormat, stream: TextIO | None = None) -> None:
    """Send every logger's lines (uvicorn's too: start it with ``log_config=None``) to
    ``stream`` (stderr by default), formatted as ``log_format`` says."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
