"""The SBIS (Saby) cloud's payloads in and out: pure (bytes -> values, values -> bytes).

Covers the two auth styles (service token ``oauth/service/``, JSON-RPC ``СБИС.Аутентифицировать``),
the OFD listings (``kkts``, ``storages``, ``docs``), the ``{"Result": "<JSON text>"}`` wrapper some
endpoints add, JSON-RPC ``error`` objects, HTML error pages and ``Retry-After``. See README.md
(Sources and quirks) for what is verified and what is inferred.

Invariants: no I/O, no clock (``now`` is passed in); JSON numbers with a fraction are read as
``Decimal`` (never float), so money and quantities convert exactly; every refusal is a
:class:`VendorError` saying whether a retry may help.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

RPC_CONTENT_TYPE = "application/json-rpc;charset=utf-8"
TOKEN_HEADER = "X-SBISAccessToken"
SESSION_HEADER = "X-SBISSessionID"
LOGIN_METHOD = "СБИС.Аутентифицировать"
LOGOUT_METHOD = "СБИС.Выход"
RECEIPT = "receipt"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
_SNIPPET = 200


class VendorError(Exception):
    """The cloud refused or answered something unusable. ``retry``: a later attempt may succeed
    (5xx, HTML page, 429, malformed page); ``kind``: auth | rights | rate | server | client | malformed;
    ``retry_after``: seconds the cloud asked us to wait (429/503), else None."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int = 0,
        retry: bool = True,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind, self.status, self.retry, self.retry_after = kind, status, retry, retry_after


# ------------------------------------------------------------------ answers


def retry_after(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` in seconds from ``now``: delta-seconds or an HTTP date; None when absent or bad."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def looks_like_html(content_type: str, body: bytes) -> bool:
    head = body[:256].lstrip().lower()
    return "html" in content_type.lower() or head.startswith((b"<!doctype", b"<html", b"<"))


def check_status(
    status: int, content_type: str, body: bytes, retry_after_header: str | None, now: datetime
) -> None:
    """Raise :class:`VendorError` for an answer that is not a usable 2xx JSON page."""
    snippet = body[:_SNIPPET].decode("utf-8", "replace")
    if status == 401:
        raise VendorError("auth", f"401: {snippet}", status=status)
    if status == 403:
        raise VendorError(
            "rights", f"403 (the account lacks OFD rights?): {snippet}", status=status, retry=False
        )
    if status == 429:
        raise VendorError(
            "rate", "429 too many requests", status=status, retry_after=retry_after(retry_after_header, now)
        )
    if status >= 500:
        kind = "html" if looks_like_html(content_type, body) else "server"
        raise VendorError(
            kind, f"{status}: {snippet}", status=status, retry_after=retry_after(retry_after_header, now)
        )
    if not 200 <= status < 300:
        raise VendorError("client", f"{status}: {snippet}", status=status, retry=False)
    if looks_like_html(content_type, body):
        raise VendorError("html", f"{status} with an HTML page: {snippet}", status=status)


def load(body: bytes) -> Any:
    """The JSON of a page, the ``{"Result": "<JSON text>"}`` wrapper decoded; fractions as Decimal."""
    try:
        data = json.loads(body, parse_float=Decimal)
        if isinstance(data, dict) and set(data) == {"Result"} and isinstance(data["Result"], str):
            data = json.loads(data["Result"], parse_float=Decimal)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise VendorError("malformed", f"not JSON: {body[:_SNIPPET]!r}") from exc
    return data


def rpc_result(data: Any) -> Any:
    """The ``result`` of a JSON-RPC answer; its ``error`` (logged whole) as VendorError."""
    if not isinstance(data, dict):
        raise VendorError("malformed", f"JSON-RPC answer is not an object: {str(data)[:_SNIPPET]}")
    if data.get("error") is not None:
        raise VendorError(
            "auth",
            f"JSON-RPC error: {json.dumps(data['error'], ensure_ascii=False, default=str)}",
            retry=False,
        )
    if "result" not in data:
        raise VendorError("malformed", "JSON-RPC answer without result or error")
    return data["result"]


# ------------------------------------------------------------------ auth


def token_request(app_client_id: str, app_secret: str, secret_key: str) -> bytes:
    return json.dumps(
        {"app_client_id": app_client_id, "app_secret": app_secret, "secret_key": secret_key}
    ).encode()


def token_answer(data: Any) -> tuple[str, str]:
    """(token, sid) from ``oauth/service/``; some deployments name the token ``access_token``."""
    if not isinstance(data, dict):
        raise VendorError("malformed", "token answer is not an object")
    token = data.get("token") or data.get("access_token")
    if not isinstance(token, str) or not token:
        raise VendorError("auth", "token answer carries no token", retry=False)
    sid = data.get("sid")
    return token, sid if isinstance(sid, str) else ""


def rpc_request(method: str, params: Mapping[str, Any], request_id: int = 0) -> bytes:
    return json.dumps(
        {"jsonrpc": "2.0", "method": method, "params": params, "id": request_id}, ensure_ascii=False
    ).encode()


def login_request(login: str, password: str) -> bytes:
    return rpc_request(LOGIN_METHOD, {"Параметр": {"Логин": login, "Пароль": password}})


def logout_request() -> bytes:
    return rpc_request(LOGOUT_METHOD, {})


def session_answer(data: Any) -> str:
    sid = rpc_result(data)
    if not isinstance(sid, str) or not sid:
        raise VendorError("auth", "login answer carries no session id", retry=False)
    return sid


# ------------------------------------------------------------------ OFD listings


@dataclass(frozen=True, slots=True)
class Register:
    reg_id: str  # kktRegId
    fn: str  # the current fiscal drive
    address: str


@dataclass(frozen=True, slots=True)
class Storage:
    fn: str
    effective_from: float | None  # raw seconds in the documents' frame (see parse_time)
    effective_to: float | None  # None: the current drive


@dataclass(frozen=True, slots=True)
class Listed:
    """One row of a docs listing: its wrapper kind and body; ``fd`` is None when unreadable."""

    kind: str
    body: Mapping[str, Any]
    fn: str
    fd: int | None
    at: float | None  # raw dateTime


def _rows(data: Any, *names: str) -> list[Any]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for name in names:
            if isinstance(data.get(name), list):
                return list(data[name])
    raise VendorError(
        "malformed", f"expected a list (or an object with {'/'.join(names)}): {str(data)[:_SNIPPET]}"
    )


def _id(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    return value.strip() if isinstance(value, str) else ""


def registers(data: Any) -> list[Register]:
    """Rows of ``GET /ofd/v1/orgs/{inn}/kkts``; rows without a regId are dropped."""
    out = []
    for row in _rows(data, "kkts", "items", "result"):
        if isinstance(row, dict) and _id(row.get("regId")):
            address = row.get("address")
            out.append(
                Register(
                    _id(row.get("regId")),
                    _id(row.get("fsNumber")),
                    address if isinstance(address, str) else "",
                )
            )
    return out


def storages(data: Any) -> list[Storage]:
    """Rows of ``GET .../kkts/{regId}/storages``; rows without a number are dropped."""
    out = []
    for row in _rows(data, "storages", "items", "result"):
        if not isinstance(row, dict):
            continue
        fn = _id(row.get("fsNumber") or row.get("storageNumber") or row.get("fn") or row.get("number"))
        if fn:
            out.append(Storage(fn, parse_time(row.get("effectiveFrom")), parse_time(row.get("effectiveTo"))))
    return out


def documents(data: Any, fn: str) -> list[Listed]:
    """Rows of ``GET .../storages/{fn}/docs``: each ``{"<kind>": {...}}``. A row that cannot be read
    at all comes back with kind ``?``, a row naming another fiscal drive without its number (the
    mapping refuses both, the poll loop records them)."""
    out = []
    for row in _rows(data, "docs", "documents", "items", "result"):
        if isinstance(row, dict) and len(row) == 1:
            kind, body = next(iter(row.items()))
            if isinstance(body, dict):
                fd = body.get("fiscalDocumentNumber")
                number = fd if isinstance(fd, int) and not isinstance(fd, bool) and fd > 0 else None
                if _id(body.get("fiscalDriveNumber")) not in ("", fn):
                    number = None  # another drive's document in this drive's listing
                out.append(Listed(str(kind), body, fn, number, parse_time(body.get("dateTime"))))
                continue
        out.append(Listed("?", {"row": row}, fn, None, None))
    return out


def parse_time(value: Any) -> float | None:
    """A time as the OFD writes it: Unix-like seconds (int) or ``2025-03-14T10:00:00`` text (no
    zone: read as is, in the documents' frame); None when absent or unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | Decimal):
        return float(value)
    if isinstance(value, str) and value.strip():
        text = value.strip().replace(" ", "T")
        try:
            when = datetime.fromisoformat(text.removesuffix("Z"))
        except ValueError:
            return None
        # an offset, when written, is dropped: the wall clock is the documents' frame
        return when.replace(tzinfo=UTC).timestamp()
    return None


def format_time(raw: float) -> str:
    """Raw seconds in the documents' frame -> ``2025-03-14T10:00:00`` (dateFrom/dateTo)."""
    return datetime.fromtimestamp(int(raw), UTC).strftime(TIME_FORMAT)


def docs_query(date_from: float, date_to: float, limit: int) -> dict[str, str]:
    return {"dateFrom": format_time(date_from), "dateTo": format_time(date_to), "limit": str(limit)}


def kkts_path(inn: str) -> str:
    return f"/ofd/v1/orgs/{inn}/kkts"


def storages_path(inn: str, reg_id: str) -> str:
    return f"/ofd/v1/orgs/{inn}/kkts/{reg_id}/storages"


def docs_path(inn: str, reg_id: str, fn: str) -> str:
    return f"/ofd/v1/orgs/{inn}/kkts/{reg_id}/storages/{fn}/docs"
