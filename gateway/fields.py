"""Payload readers for every driver: JSON in, typed values out, or BadInput naming the field.

The one set of readers the wire modules use (Evotor, Modul Kassa, Poster, native); vendor rules
are keyword parameters, not copies:

- :func:`loads` / :func:`load_object` / :func:`embedded`: JSON text -> values. UTF-8 (the
  native API also takes what the stdlib takes: UTF-16/32, a BOM); non-integer numbers are
  ``Decimal``, never float; ``NaN`` / ``Infinity`` refused; nesting deeper than
  :data:`MAX_DEPTH` refused; ``trailing_commas`` for Evotor's v1 documents; ``fast`` decodes
  with orjson first (the native hot path: see :func:`loads` for what it changes);
- shapes: :func:`obj` / :func:`opt_obj` (``encoded``: a JSON string holding an object, as
  Poster sends), :func:`lst` / :func:`opt_lst`, :func:`objs` (a list of objects);
- text: :func:`text` (numbers are written back as text: ids come both ways; ``strict``: strings
  only; ``whole``: numbers only when whole, written as integers) and :func:`ident`;
- numbers: :func:`decimal`, :func:`kopecks` (rubles -> integer kopecks, half-up), :func:`milli`
  (quantities -> thousandths, half-up), :func:`integer` (a whole number; ``strict``: a JSON
  integer only, the native API's kopecks, points and thousandths), :func:`redeem` (points or
  ``"max"``), :func:`boolean`; :func:`rubles` and :func:`line_amount` compute, they do not read;
- :func:`timestamp`: RFC 3339 / ISO-8601 with a UTC offset (``Z`` and ``+0300`` too);
- customers: :func:`customer` builds a :class:`~gateway.receipt.CustomerId` after length and
  charset checks; :func:`first_customer` takes the first identifier given; :class:`Entered` is
  what a cashier types into one of our till plugins.

Invariants: every reader is pure and raises :class:`gateway.errors.BadInput` with ``where`` as
its field for malformed input, and nothing else escapes (a ``where`` of ``""`` gives a
field-less error); floats never come out of a reader that returns money or quantities; money
is integer kopecks and quantities integer thousandths, rounded half-up once, here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from gateway.errors import BadInput
from gateway.receipt import MAX_LINES, CustomerId, IdKind, to_milli, to_minor

MAX_TEXT = 512
MAX_ID = 128
MAX_DEPTH = 64  # JSON nesting: no till payload comes near it
LIMIT = Decimal(10) ** 11  # rubles; anything larger is a typo or an attack
WHOLE_LIMIT = 10**15  # whole numbers read leniently (ms timestamps pass, int64 overflow does not)

Obj = dict[str, object]

# ---------------------------------------------------------------- JSON text


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)  # built once

_fast_loads: Callable[[bytes | str], Any] | None
_FastError: type[Exception]
try:  # orjson decodes the common case (UTF-8, 64-bit integers) several times faster
    from orjson import JSONDecodeError as _FastError
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - depends on the environment
    _fast_loads, _FastError = None, ValueError


def loads(
    body: bytes | str, where: str = "body", *, fast: bool = False, any_encoding: bool = False,
    trailing_commas: bool = False,
) -> object:
    """JSON text -> value; BadInput(``where``) for anything malformed.

    Bytes are UTF-8 (a BOM or another encoding is refused) unless ``any_encoding``, which reads
    what ``json.loads`` reads (UTF-8/16/32 detected, a BOM, lone surrogates). Non-integer
    numbers are ``Decimal``; ``NaN``/``Infinity`` refused; nesting deeper than
    :data:`MAX_DEPTH` refused. ``trailing_commas`` drops commas before ``}``/``]`` first.

    ``fast`` tries orjson first: every text it refuses is decoded again by the stdlib path, so
    errors are the stdlib path's, and values are equal except that a fraction, an exponent or
    an integer beyond 64 bits comes back as a float. Use it only where numbers are read by
    :func:`integer` with ``strict`` (which refuses a float as it refuses a ``Decimal``).
    """
    if trailing_commas:
        if isinstance(body, bytes):
            try:
                body = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadInput(f"malformed JSON: {str(exc)[:120]}", where) from None
        body = strip_trailing_commas(body)
    value: Any
    if fast and _fast_loads is not None:
        try:
            value = _fast_loads(body)
        except _FastError:
            value = _slow_loads(body, where, any_encoding)
    else:
        value = _slow_loads(body, where, any_encoding)
    if (body.count(b"[") + body.count(b"{") if isinstance(body, bytes)
            else body.count("[") + body.count("{")) > MAX_DEPTH and _too_deep(value):
        raise BadInput(f"JSON nested deeper than {MAX_DEPTH} levels", where)
    return value


def _slow_loads(body: bytes | str, where: str, any_encoding: bool) -> Any:
    try:
        if isinstance(body, bytes):
            body = (body.decode(json.detect_encoding(body), "surrogatepass") if any_encoding
                    else body.decode("utf-8"))
        return _DECODER.decode(body)
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError and _reject_constant's
        raise BadInput(f"malformed JSON: {str(exc)[:120]}", where) from None
    except RecursionError:
        raise BadInput(f"JSON nested deeper than {MAX_DEPTH} levels", where) from None


def _too_deep(value: object) -> bool:
    """Whether containers nest deeper than MAX_DEPTH (iterative: deep input cannot recurse)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        for child in item.values() if isinstance(item, dict) else item if isinstance(item, list) else ():
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


def strip_trailing_commas(text: str) -> str:
    """Drop commas that directly precede ``}`` or ``]`` outside strings."""
    out: list[str] = []
    in_str = esc = False
    pending = -1  # index in out of a comma that may be trailing
    for ch in text:
        if in_str:
            out.append(ch)
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch in "}]" and pending >= 0:
            out[pending] = ""
        if ch == ",":
            pending = len(out)
        elif not ch.isspace():
            pending = -1
        if ch == '"':
            in_str = True
        out.append(ch)
    return "".join(out)


def load_object(body: bytes | str, where: str = "body", *, unwrap: bool = False, fast: bool = False,
                any_encoding: bool = False) -> Obj:
    """A body that must be one JSON object; ``unwrap``: a JSON string holding it is decoded once more."""
    value = loads(body, where, fast=fast, any_encoding=any_encoding)
    if unwrap and isinstance(value, str):
        value = loads(value, where)
    if type(value) is not dict:
        raise BadInput("must be a JSON object", where)
    return value


def embedded(value: object, where: str, *, times: int = 1) -> object:
    """JSON carried as a string inside JSON (Gson extras, Poster's ``data``): a string is decoded,
    up to ``times`` times (a string of a string …); a blank string reads as None; any other
    value is returned as it is."""
    for _ in range(times):
        if not isinstance(value, str):
            break
        value = loads(value, where) if value.strip() else None
    return value


# ---------------------------------------------------------------- shapes


def obj(value: object, where: str, *, encoded: bool = False) -> Obj:
    """An object; ``encoded``: a string holding a JSON object is decoded first (Poster)."""
    if type(value) is dict:
        return value
    if value is None:
        raise BadInput("is required", where)
    if encoded and isinstance(value, str) and value.lstrip().startswith("{"):
        value = loads(value, where)
    if not isinstance(value, dict):
        raise BadInput("must be an object", where)
    return value


def opt_obj(value: object, where: str, *, encoded: bool = False) -> Obj:
    """:func:`obj`, with None read as an empty object."""
    return {} if value is None else obj(value, where, encoded=encoded)


def lst(value: object, where: str, *, limit: int | None = None) -> list[object]:
    """A list of at most ``limit`` items (when given)."""
    if not isinstance(value, list):
        raise BadInput("is required" if value is None else "must be a list", where)
    if limit is not None and len(value) > limit:
        raise BadInput(f"at most {limit} items", where)
    return value


def opt_lst(value: object, where: str, *, limit: int | None = None) -> list[object]:
    """:func:`lst`, with None read as an empty list."""
    return [] if value is None else lst(value, where, limit=limit)


def objs(value: object, where: str, *, required: bool = False, limit: int = MAX_LINES) -> list[Obj]:
    """A list of objects (item errors name ``where[i]``); None reads as [] unless ``required``."""
    items = lst(value, where, limit=limit) if required else opt_lst(value, where, limit=limit)
    for i, item in enumerate(items):
        if type(item) is not dict:
            raise BadInput("must be an object", f"{where}[{i}]")
    return items  # type: ignore[return-value]  # every item checked above


# ---------------------------------------------------------------- text


def text(
    value: object, where: str, *, required: bool = False, limit: int = MAX_TEXT, strict: bool = False,
    whole: bool = False,
) -> str:
    """A string of at most ``limit`` characters; None and "" read as "" (or "is required").

    A JSON number is written back as text (ids come both ways): as the Decimal wrote it, or with
    ``whole`` only when it is a whole number, as an integer (Poster's ids); ``strict`` refuses
    numbers (the native API). Booleans are always refused.
    """
    if type(value) is str and 0 < len(value) <= limit:  # the common case, checked first
        return value
    if value is None or value == "":
        if required:
            raise BadInput("is required", where)
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal) or (
            strict and not isinstance(value, str)):
        raise BadInput("must be a string", where)
    if isinstance(value, Decimal) and whole:
        if value != value.to_integral_value():
            raise BadInput("must be a whole number or a string", where)
        value = int(value)
    out = value if isinstance(value, str) else str(value)
    if len(out) > limit:
        raise BadInput(f"at most {limit} characters", where)
    return out


def ident(
    value: object, where: str, *, required: bool = True, limit: int = MAX_ID, whole: bool = False,
) -> str:
    """An opaque id: :func:`text`, required unless told, at most :data:`MAX_ID` characters."""
    return text(value, where, required=required, limit=limit, whole=whole)


# ---------------------------------------------------------------- numbers


def decimal(value: object, where: str, *, limit: Decimal | int = LIMIT, spaces: bool = False) -> Decimal:
    """A JSON number (parsed as Decimal) or a decimal string, finite and below ``limit`` in
    magnitude; floats and booleans refused; ``spaces``: digit groups may be separated by spaces
    (``"1 000.50"``, Poster)."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise BadInput("must be a decimal number or string", where)
    if isinstance(value, str):
        value = value.strip().replace(" ", "") if spaces else value.strip()
    try:
        dec = Decimal(value)
    except (InvalidOperation, ValueError):
        raise BadInput(f"not a number: {str(value)[:40]!r}", where) from None
    if not dec.is_finite() or abs(dec) >= limit:
        raise BadInput("not a finite, sane number", where)
    return dec


def kopecks(value: object, where: str, *, default: int | None = None, signed: bool = True,
            spaces: bool = False) -> int:
    """Rubles (a JSON number or decimal string) -> integer kopecks, half-up; None reads as
    ``default`` when one is given; ``signed=False`` refuses a negative amount."""
    if value is None and default is not None:
        return default
    kop = to_minor(decimal(value, where, spaces=spaces), where)
    if kop < 0 and not signed:
        raise BadInput("must not be negative", where)
    return kop


def milli(value: object, where: str, *, signed: bool = True, spaces: bool = False) -> int:
    """A quantity (a JSON number or decimal string) -> integer thousandths, half-up;
    ``signed=False`` refuses a negative quantity."""
    qty = to_milli(decimal(value, where, spaces=spaces), where)
    if qty < 0 and not signed:
        raise BadInput("must not be negative", where)
    return qty


def integer(
    value: object, where: str, *, strict: bool = False, required: bool = False, default: int = 0,
    lo: int = -WHOLE_LIMIT, hi: int = WHOLE_LIMIT,
) -> int:
    """A whole number within [lo, hi]; None (and, unless ``strict``, "") reads as ``default``
    unless ``required``.

    ``strict`` (the native API's kopecks, points and thousandths): a JSON integer only, no
    strings, fractions or booleans. Otherwise a JSON number or decimal string that is whole
    (``5``, ``"5"``, ``5.0``; spaces between digit groups allowed).
    """
    if type(value) is int and lo <= value <= hi:  # the common case (a bool is not exactly int)
        return value
    if value is None or (value == "" and not strict):
        if required:
            raise BadInput("is required", where)
        return default
    if strict:
        if type(value) is float and abs(value) >= 2**63:  # orjson's reading of an integer beyond 64 bits
            value = lo - 1 if value < 0 else hi + 1  # refused as out of range, as the stdlib's big int
        if isinstance(value, bool) or not isinstance(value, int):
            what = "a fraction" if isinstance(value, Decimal | float) else type(value).__name__
            raise BadInput(f"must be an integer (kopecks, points or thousandths), got {what}", where)
        number = value
    else:
        dec = decimal(value, where, limit=WHOLE_LIMIT, spaces=True)
        if dec != dec.to_integral_value():
            raise BadInput("must be a whole number", where)
        number = int(dec)
    if number < lo:
        raise BadInput(f"must not be less than {lo}", where)
    if number > hi:
        raise BadInput(f"must not exceed {hi}", where)
    return number


def redeem(value: object, where: str, *, negative_as_zero: bool = False) -> tuple[int, bool]:
    """Points a cashier asked to redeem -> ``(points, redeem_max)``: ``"max"`` (any case) is the
    maximum; None and "" are none; otherwise a whole, non-negative number (``negative_as_zero``:
    a negative number reads as none, as Poster's plugin has always been read)."""
    if isinstance(value, str) and value.strip().lower() == "max":
        return 0, True
    points = integer(value, where, lo=-WHOLE_LIMIT if negative_as_zero else 0)
    return max(0, points), False


def unsigned(amount: int, where: str, *, refund: bool) -> int:
    """A sum, price or quantity of a fiscal document as a magnitude. A sale's must not be
    negative (a negative sale line is never turned into a positive one); a refund document may
    state its figures negative (Evotor's payback documents do), and their magnitude is taken."""
    if amount < 0 and not refund:
        raise BadInput("must not be negative in a sale", where)
    return -amount if amount < 0 else amount


def boolean(value: object, where: str, *, default: bool = False) -> bool:
    """``true`` or ``false``; None reads as ``default``."""
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BadInput("must be true or false", where)
    return value


def rubles(amount: int) -> str:
    """Integer kopecks -> the plain decimal string the devices read ("86.00", "-0.05")."""
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount), 100)
    return f"{sign}{whole}.{cents:02d}"


def line_amount(price: int, qty_milli: int) -> int:
    """Unit price (kopecks) x quantity (thousandths) -> kopecks, rounded half-up (a half kopeck
    goes up, as tills sum a position); exact integer arithmetic."""
    return (price * qty_milli + 500) // 1000


# ---------------------------------------------------------------- time


def timestamp(value: object, where: str, *, limit: int = MAX_TEXT, strict: bool = False) -> datetime | None:
    """RFC 3339 / ISO-8601 with a UTC offset (also ``Z`` and ``+0300``); None and "" read as None;
    ``strict``: a string only."""
    raw = text(value, where, limit=limit, strict=strict)
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise BadInput("must be an RFC 3339 time like 2024-05-01T12:00:00+03:00", where) from None
    if when.tzinfo is None:
        raise BadInput("must carry a UTC offset (…+03:00 or …Z)", where)
    return when


# ---------------------------------------------------------------- customers

CUSTOMER_LIMITS = {IdKind.QR: 2048}  # every other kind: MAX_CUSTOMER characters
MAX_CUSTOMER = 256
_PHONE_MARKS = str.maketrans("", "", "+-() .")  # deleted, what is left must be 1 to 15 ASCII digits
_QR_SPACE = frozenset("\t\n\r")


def customer(kind: IdKind, value: object, where: str, *, otp: str = "", strict: bool = False,
             contact: bool = False) -> CustomerId:
    """A customer identifier of ``kind`` -> :class:`CustomerId`, checked: not blank, not longer
    than its kind allows (a QR payload 2048 characters, anything else 256); printable characters
    only (a QR payload may also hold tabs and line breaks); a phone only digits (1 to 15),
    ``+``, spaces, ``-``, ``.`` and parentheses. The value is kept as given (normalising a phone
    is the core's business). ``contact``: the till recorded it as a contact (an e-receipt's
    phone), not to identify a loyalty member (:attr:`CustomerId.if_known`)."""
    raw = text(value, where, required=True, limit=CUSTOMER_LIMITS.get(kind, MAX_CUSTOMER), strict=strict)
    if not raw.strip():
        raise BadInput("is required", where)
    if kind is IdKind.PHONE:
        digits = raw.translate(_PHONE_MARKS)
        if not (digits.isdigit() and digits.isascii() and len(digits) <= 15):
            raise BadInput("a phone number holds 1 to 15 digits, +, spaces, -, . and ( ) only", where)
    elif not raw.isprintable() and not (kind is IdKind.QR and "".join(
            ch for ch in raw if ch not in _QR_SPACE).isprintable()):
        raise BadInput("must be printable characters", where)
    return CustomerId(kind, raw, otp=otp, if_known=contact)


def first_customer(candidates: Iterable[tuple[IdKind, object, str]]) -> CustomerId | None:
    """The first of ``(kind, value, where)`` whose value is given, read by :func:`customer`;
    None when none is given."""
    for kind, value, where in candidates:
        if value is not None and value != "":
            return customer(kind, value, where)
    return None


@dataclass(frozen=True, slots=True)
class Entered:
    """What a cashier entered in one of our till plugins: a card or a phone, and the points to
    redeem (or the maximum). Drivers' own plugin messages extend it."""

    card: str = ""
    phone: str = ""
    redeem_points: int = 0
    redeem_max: bool = False

    def identified(self, *more: tuple[IdKind, object, str]) -> CustomerId | None:
        """The customer entered: the card, else the phone, else the first of ``more``
        (``(kind, value, where)``, a plugin's other identifiers); None when nothing was entered."""
        return first_customer([(IdKind.CARD, self.card, "loyalty.card"),
                               (IdKind.PHONE, self.phone, "loyalty.phone"), *more])
