"""Field readers for vendor JSON payloads: typed values out of parsed JSON, or BadInput naming the field.

Owns the checks the Evotor and Modul Kassa wires share (JSON parsed by
:func:`gateway.http_edge.loads`, so non-integer numbers are ``Decimal``):

- :func:`obj` / :func:`opt_obj` / :func:`lst` / :func:`opt_lst`: shape checks (``opt_``: None
  reads as empty);
- :func:`text`: a string of at most ``limit`` characters; numbers are accepted and written back
  as text (ids come both ways);
- :func:`decimal` / :func:`kopecks` / :func:`milli`: a JSON number or decimal string, never a
  float or a boolean, finite and below 10^11; money becomes integer kopecks and quantities
  thousandths, half-up (:func:`gateway.receipt.to_minor` / ``to_milli``); :func:`rubles` is the
  way back (``"86.00"``, ``"-0.05"``);
- :func:`timestamp`: ISO-8601 with an offset, also ``+0000`` and ``Z``.

Invariant: malformed input raises :class:`gateway.errors.BadInput` with ``where`` as its field,
and nothing else escapes. Pure. Vendors whose rules differ (Poster's ids, the native API's
strict types) keep their own readers.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation

from gateway.errors import BadInput
from gateway.receipt import to_milli, to_minor

MAX_TEXT = 512
LIMIT = Decimal(10) ** 11  # rubles; anything larger is a typo or an attack


def obj(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise BadInput("must be an object", where)
    return value


def opt_obj(value: object, where: str) -> dict[str, object]:
    return {} if value is None else obj(value, where)


def lst(value: object, where: str) -> list[object]:
    if not isinstance(value, list):
        raise BadInput("must be a list", where)
    return value


def opt_lst(value: object, where: str) -> list[object]:
    return [] if value is None else lst(value, where)


def text(value: object, where: str, *, required: bool = False, limit: int = MAX_TEXT) -> str:
    """A string (numbers are accepted and written back as text: ids come both ways)."""
    if value is None or value == "":
        if required:
            raise BadInput("is required", where)
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise BadInput("must be a string", where)
    out = value if isinstance(value, str) else str(value)
    if len(out) > limit:
        raise BadInput(f"longer than {limit} characters", where)
    return out


def decimal(value: object, where: str) -> Decimal:
    """A JSON number (parsed as Decimal) or a decimal string; floats and booleans refused."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise BadInput("must be a decimal number or string", where)
    try:
        dec = Decimal(value.strip() if isinstance(value, str) else value)
    except (InvalidOperation, ValueError) as exc:
        raise BadInput(f"not a number: {str(value)[:40]!r}", where) from exc
    if not dec.is_finite() or abs(dec) >= LIMIT:
        raise BadInput("not a finite, sane number", where)
    return dec


def kopecks(value: object, where: str, *, default: int | None = None) -> int:
    """Rubles (string or JSON number) -> integer kopecks, half-up; None reads as ``default`` if given."""
    if value is None and default is not None:
        return default
    return to_minor(decimal(value, where), where)


def milli(value: object, where: str) -> int:
    """A quantity -> integer thousandths, half-up."""
    return to_milli(decimal(value, where), where)


def rubles(amount: int) -> str:
    """Integer kopecks -> the plain decimal string the devices read ("86.00", "-0.05")."""
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount), 100)
    return f"{sign}{whole}.{cents:02d}"


_OFFSET_NO_COLON = re.compile(r"([+-]\d{2})(\d{2})$")


def timestamp(value: object, where: str, *, limit: int = MAX_TEXT) -> datetime | None:
    """ISO-8601 with an offset; also the ``+0000`` form and a ``Z`` suffix. None and "" read as None."""
    raw = text(value, where, limit=limit)
    if not raw:
        return None
    fixed = _OFFSET_NO_COLON.sub(r"\1:\2", raw.replace("Z", "+00:00"))
    try:
        when = datetime.fromisoformat(fixed)
    except ValueError as exc:
        raise BadInput(f"not an ISO-8601 time: {raw[:40]!r}", where) from exc
    if when.tzinfo is None:
        raise BadInput("time must carry a UTC offset", where)
    return when
