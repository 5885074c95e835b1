"""gateway.logs: one line per event, key=value or JSON, configured secrets never written."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from gateway.logs import RepeatFilter, TextFormatter, setup_logging

SECRET = "s3cr3t-key"


@pytest.fixture
def capture() -> Iterator[tuple[io.StringIO, list[str]]]:
    stream = io.StringIO()
    secrets = [SECRET]
    yield stream, secrets
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_posgw", False)]:
        root.removeHandler(handler)


def test_text_line_with_fields_and_redaction(capture: tuple[io.StringIO, list[str]]) -> None:
    stream, secrets = capture
    setup_logging("INFO", "text", secrets, stream=stream)
    logging.getLogger("posgw.test").info("auth with %s", SECRET, extra={"driver": "native", "key": SECRET,
                                                                         "n": 3})
    line = stream.getvalue()
    assert line.count("\n") == 1
    assert SECRET not in line
    assert 'msg="auth with ***"' in line and "driver=native" in line and 'key="***"' in line and "n=3" in line
    assert "level=info" in line and "logger=posgw.test" in line


def test_json_line_and_traceback_folded(capture: tuple[io.StringIO, list[str]]) -> None:
    stream, secrets = capture
    setup_logging("DEBUG", "json", secrets, stream=stream)
    try:
        raise ValueError(f"bad token {SECRET}")
    except ValueError:
        logging.getLogger("posgw.test").exception("failed", extra={"headers": {"Authorization": SECRET}})
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["msg"] == "failed" and record["level"] == "error"
    assert "ValueError: bad token ***" in record["exc"]
    assert SECRET not in line


def test_level_filters(capture: tuple[io.StringIO, list[str]]) -> None:
    stream, secrets = capture
    setup_logging("WARNING", "text", secrets, stream=stream)
    logging.getLogger("posgw.test").info("quiet")
    logging.getLogger("posgw.test").warning("loud")
    assert [line.split("msg=")[1] for line in stream.getvalue().splitlines()] == ["loud"]


def test_repeated_errors_are_rate_limited_and_counted() -> None:
    now = [100.0]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    handler.addFilter(RepeatFilter(60.0, clock=lambda: now[0]))
    log = logging.getLogger("posgw.test.repeat")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        for _ in range(50):
            log.error("core unreachable", extra={"attempt": 1})
            log.info("retrying")  # events are never suppressed
        log.warning("core unreachable")  # another level: its own line
        log.error("disk full")  # another message: its own line
        now[0] += 61
        log.error("core unreachable")
    finally:
        log.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    errors = [line for line in lines if 'msg="core unreachable"' in line and "level=error" in line]
    assert len(errors) == 2
    assert "suppressed" not in errors[0] and errors[1].endswith("suppressed=49")
    assert sum('msg=retrying' in line for line in lines) == 50
    assert sum("level=warning" in line for line in lines) == 1
    assert sum('msg="disk full"' in line for line in lines) == 1


def test_setup_logging_rate_limits(capture: tuple[io.StringIO, list[str]]) -> None:
    stream, secrets = capture
    setup_logging("INFO", "text", secrets, stream=stream)
    for _ in range(10):
        logging.getLogger("posgw.test.setup").error("same failure")
    assert stream.getvalue().count('msg="same failure"') == 1
