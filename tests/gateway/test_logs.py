"""gateway.logs: one line per event, key=value or JSON, configured secrets never written."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from gateway.logs import setup_logging

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
