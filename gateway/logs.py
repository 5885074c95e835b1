"""Structured logs for operators: one line per event, key=value text or JSON, never a secret.

Callers log a short event message plus fields through ``extra``::

    log.info("driver restarted", extra={"driver": "native", "attempt": 3})

which renders as ``ts=... level=info logger=gateway.daemon msg="driver restarted" driver=native
attempt=3`` (or one JSON object per line). Invariants:
- a line never contains a newline (tracebacks are folded into one escaped field);
- every configured secret (:meth:`gateway.config.GatewayConfig.secrets`) is replaced by
  ``***`` in the message, the fields and the traceback before anything is written;
- a WARNING or ERROR repeated (same logger, level and message) within ``REPEAT_WINDOW_S`` is
  written once: the copies are counted, and the next line written after the window carries
  ``suppressed=N`` (:class:`RepeatFilter`). INFO and DEBUG lines are events and always written.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

REDACTED = "***"
REPEAT_WINDOW_S = 60.0
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a caller passed through ``extra``."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _base(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    out.update(record_fields(record))
    if record.exc_info:
        out["exc"] = logging.Formatter().formatException(record.exc_info)
    return out


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    if text and all(c.isalnum() or c in "-_.:/@+" for c in text):
        return text
    return json.dumps(text, ensure_ascii=False)  # quotes and escapes newlines


class TextFormatter(logging.Formatter):
    """``key=value`` pairs, values quoted when they contain spaces or quotes."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_text_value(v)}" for k, v in _base(record).items())


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_base(record), default=str, ensure_ascii=False)


class RedactFilter(logging.Filter):
    """Replaces every configured secret in a record before it is formatted."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # longest first so a secret containing another is replaced whole
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        record.msg = self.redact(record.getMessage())
        record.args = None
        for key, value in record_fields(record).items():
            if isinstance(value, str):
                setattr(record, key, self.redact(value))
            elif not isinstance(value, int | float | bool) and value is not None:
                setattr(record, key, self.redact(json.dumps(value, default=str, ensure_ascii=False)))
        if record.exc_info:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.exc_text:
            setattr(record, "exc", self.redact(record.exc_text))  # noqa: B010
            record.exc_text = None
        return True


class RepeatFilter(logging.Filter):
    """Rate-limits repeated WARNING/ERROR lines (see the module docstring); bounded memory."""

    def __init__(self, window_s: float = REPEAT_WINDOW_S, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 1024) -> None:
        super().__init__()
        self.window_s, self._clock, self._max_keys = window_s, clock, max_keys
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}  # key -> (written at, dropped since)
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < self.window_s:
                self._seen[key] = (seen[0], seen[1] + 1)
                return False
            if seen is not None and seen[1]:
                setattr(record, "suppressed", seen[1])  # noqa: B010
            if seen is None and len(self._seen) >= self._max_keys:
                self._seen.clear()
            self._seen[key] = (now, 0)
        return True


def setup_logging(
    level: str = "INFO", fmt: str = "text", secrets: Iterable[str] = (), stream: TextIO | None = None,
) -> logging.Handler:
    """Install one handler on the root logger (replacing earlier ones from here); return it."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RepeatFilter())  # before redaction: it keys on the message as logged
    handler.addFilter(RedactFilter(secrets))
    setattr(handler, "_posgw", True)  # noqa: B010
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_posgw", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("aiohttp.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler
