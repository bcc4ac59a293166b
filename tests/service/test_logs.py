"""service/logs.py: request IDs taken when sane, JSON lines with the request's fields, text
lines for a terminal."""

import io
import json
import logging
import os
import re
import threading
from datetime import UTC, datetime

import pytest

from service.logs import RequestContext, configure_logging, current, request_id, serving


@pytest.mark.parametrize(
    "given",
    ["3f2b9c1e-8d4a-4f0e-9b7a-1c2d3e4f5a6b", "01HZX3J8K9", "abc", "req.42:retry/2+x=", "a" * 128],
)
def test_a_sane_request_id_is_kept(given):
    assert request_id(given) == given
    assert request_id(given.encode()) == given


@pytest.mark.parametrize(
    "given",
    [None, "", " abc", "abc def", "a\nb", 'a"b', "a" * 129, "-abc", "é", b"\xff\xfe"],
)
def test_anything_else_is_replaced_by_a_new_id(given):
    new = request_id(given)
    assert re.fullmatch(r"[0-9a-f]{32}", new), new
    assert new != request_id(given)  # new each time


@pytest.fixture
def lines(monkeypatch):
    """Configure the root logger into a buffer; ``lines()`` -> what was written. The
    original handlers come back after the test."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    buffer = io.StringIO()

    def configure(log_format):
        configure_logging("info", log_format, buffer)
        return lambda: buffer.getvalue().splitlines()

    yield configure
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_json_lines_carry_the_request_and_record_fields(lines):
    read = lines("json")
    log = logging.getLogger("unconv.access")
    before = datetime.now(UTC)
    context = RequestContext("req-1", route="/generate")
    with serving(context):
        context.batch = "b7"
        log.info("POST /generate 200", extra={"status": 200, "duration_ms": 12.5})
    log.warning("outside")
    (inside, outside) = [json.loads(line) for line in read()]
    assert datetime.fromisoformat(inside.pop("time")) >= before.replace(microsecond=0)
    assert inside == {
        "level": "info",
        "logger": "unconv.access",
        "worker": os.getpid(),
        "message": "POST /generate 200",
        "request_id": "req-1",
        "route": "/generate",
        "batch": "b7",
        "status": 200,
        "duration_ms": 12.5,
    }
    assert set(outside) == {"time", "level", "logger", "worker", "message"}
    assert outside["level"] == "warning" and outside["message"] == "outside"


def test_a_json_line_holds_a_traceback_in_one_line(lines):
    read = lines("json")
    try:
        raise ValueError("broken\non two lines")
    except ValueError:
        logging.getLogger("unconv").exception("failed")
    (line,) = read()
    entry = json.loads(line)
    assert entry["level"] == "error" and entry["message"] == "failed"
    assert entry["error"].startswith("Traceback") and "ValueError: broken" in entry["error"]


def test_text_lines_name_the_request(lines):
    read = lines("text")
    with serving(RequestContext("req-2", route="/reconstruct")):
        logging.getLogger("unconv").info("hello %s", "there", extra={"status": 404})
    logging.getLogger("unconv").info("alone")
    first, second = read()
    assert re.fullmatch(
        r"\S+ \S+ INFO unconv: hello there request_id=req-2 route=/reconstruct status=404", first
    )
    assert second.endswith("INFO unconv: alone")


def test_the_request_is_the_callers_own():
    seen = {}

    def other_thread():
        seen["thread"] = current()

    with serving(RequestContext("mine")):
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert current().request_id == "mine"
    assert current() is None and seen["thread"] is None
