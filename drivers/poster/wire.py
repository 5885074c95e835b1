"""Poster on the wire: webhooks, platform-app events, their signatures, and our answers (pure).

Owns the Poster units and quirks at the edge:
- POS objects carry money as JS numbers in currency units (``price: 10.5``); they become
  integer kopecks here through ``Decimal`` (JSON parsed with ``parse_float=Decimal``), half-up;
  counts may be fractional (weight goods) and become thousandths;
- ``products`` is an object keyed ``"0"``, ``"1"``, … (an array is tolerated); ``order.id`` is a
  millisecond timestamp beyond int32; ``modification`` is a number or a JSON string;
- a body may arrive as a JSON string holding the JSON object (tolerated, decoded once more);
  a webhook's ``data`` is a JSON-encoded string, sometimes of JSON strings (decoded up to 3 times).

Signatures (see README "Verified / inferred"):
- webhook ``verify = md5(";".join([account, object, object_id, action, data?, time, secret]))``
  with ``data`` exactly as received (never re-serialised) and ``object_id`` as PHP prints it;
- proxied requests: ``X-Poster-Signature = md5(url + body + X-Poster-Time + secret)``; the body
  is tried raw first, then as JS ``JSON.stringify`` and PHP ``json_encode`` would re-serialise it.
Comparisons are constant time. Every malformed input raises :class:`BadInput` naming the field;
no other exception leaves the ``parse_*`` functions.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from gateway import http_edge
from gateway.errors import BadInput
from gateway.fields import rubles
from gateway.receipt import MAX_LINES, to_milli, to_minor

MAX_ID = 128
MAX_TEXT = 512
_LIMIT = Decimal(10) ** 11
Obj = dict[str, Any]

# ---------------------------------------------------------------- JSON helpers


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(body: bytes | str, where: str = "body") -> Any:
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise BadInput("is not UTF-8", where) from None
    except (ValueError, RecursionError) as exc:
        raise BadInput(f"is not JSON: {str(exc)[:80]}", where) from None


def root_object(body: bytes) -> Obj:
    """The body's JSON object; a JSON string holding the object is decoded once more."""
    value = loads(body)
    if isinstance(value, str):
        value = loads(value)
    if not isinstance(value, dict):
        raise BadInput("must be a JSON object", "body")
    return value


def obj(value: Any, where: str, *, required: bool = True) -> Obj:
    if value is None and not required:
        return {}
    if isinstance(value, str) and value.strip().startswith("{"):
        value = loads(value, where)
    if not isinstance(value, dict):
        raise BadInput("must be an object", where)
    return value


def text(value: Any, where: str, *, required: bool = False, limit: int = MAX_TEXT) -> str:
    """A string; numbers are accepted as their decimal text (Poster mixes both for ids)."""
    if value is None or value == "":
        if required:
            raise BadInput("is required", where)
        return ""
    if isinstance(value, bool):
        raise BadInput("must be a string", where)
    if isinstance(value, int):
        value = str(value)
    elif isinstance(value, Decimal):
        if value != value.to_integral_value():
            raise BadInput("must be a whole number or a string", where)
        value = str(int(value))
    if not isinstance(value, str):
        raise BadInput("must be a string", where)
    if len(value) > limit:
        raise BadInput(f"at most {limit} characters", where)
    return value


def decimal(value: Any, where: str, *, limit: Decimal = _LIMIT) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise BadInput("must be a number", where)
    try:
        number = Decimal(value.strip().replace(" ", "")) if isinstance(value, str) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise BadInput("must be a number", where) from None
    if not number.is_finite() or abs(number) > limit:
        raise BadInput("must be a sane finite number", where)
    return number


def money(value: Any, where: str, *, default: int | None = None) -> int:
    """Currency units (a JS number or its text) -> kopecks, half-up; never negative."""
    if value is None and default is not None:
        return default
    kop = to_minor(decimal(value, where), where)
    if kop < 0:
        raise BadInput("must not be negative", where)
    return kop


def count(value: Any, where: str) -> int:
    qty = to_milli(decimal(value, where), where)
    if qty < 0:
        raise BadInput("must not be negative", where)
    return qty


def whole(value: Any, where: str, *, default: int = 0) -> int:
    if value is None or value == "":
        return default
    number = decimal(value, where, limit=Decimal(10) ** 15)  # ms timestamps pass, int64 overflow does not
    if number != number.to_integral_value():
        raise BadInput("must be a whole number", where)
    return int(number)


# ---------------------------------------------------------------- webhook


@dataclass(frozen=True, slots=True)
class Webhook:
    account: str
    account_number: str
    object: str
    object_id: str
    action: str
    time: str
    verify: str
    data: str | None  # exactly as received (signed as is)


def parse_webhook(body: bytes) -> Webhook:
    """A webhook body (JSON, or form-encoded as some proxies forward it) -> :class:`Webhook`."""
    stripped = body.lstrip()
    if stripped[:1] in (b"{", b'"'):
        root = root_object(body)
    else:
        try:
            root = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True))
        except (UnicodeDecodeError, ValueError):
            raise BadInput("is neither JSON nor a form", "body") from None
    data = root.get("data")
    if data is not None and not isinstance(data, str):
        raise BadInput("must be the JSON-encoded string Poster signs", "data")
    return Webhook(
        account=text(root.get("account"), "account", required=True, limit=MAX_ID),
        account_number=text(root.get("account_number"), "account_number", limit=MAX_ID),
        object=text(root.get("object"), "object", required=True, limit=64),
        object_id=text(root.get("object_id"), "object_id", required=True, limit=MAX_ID),
        action=text(root.get("action"), "action", required=True, limit=64),
        time=text(root.get("time"), "time", required=True, limit=32),
        verify=text(root.get("verify"), "verify", limit=64),
        data=data,
    )


def webhook_signature(hook: Webhook, secret: str) -> str:
    parts = [hook.account, hook.object, hook.object_id, hook.action]
    if hook.data is not None:
        parts.append(hook.data)
    parts += [hook.time, secret]
    return hashlib.md5(";".join(parts).encode("utf-8")).hexdigest()


def verify_webhook(hook: Webhook, secret: str) -> bool:
    if not secret or not hook.verify:
        return False
    expected = webhook_signature(hook, secret)
    return hmac.compare_digest(expected.encode(), hook.verify.strip().lower().encode())


def parse_data(data: str | None) -> Obj:
    """A webhook's ``data``: a JSON string, possibly of JSON strings (decoded up to 3 times)."""
    value: Any = data
    for _ in range(3):
        if not isinstance(value, str):
            break
        value = loads(value, "data") if value.strip() else {}
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadInput("must hold a JSON object", "data")
    return value


# ---------------------------------------------------------------- proxied request signature


def _reserialised(body: bytes) -> list[bytes]:
    """The body as JS JSON.stringify and PHP json_encode would write it (for the doc's checkers)."""
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return []
    js = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    php = json.dumps(value, ensure_ascii=True, separators=(",", ":")).replace("/", "\\/")
    return [js.encode("utf-8"), php.encode("utf-8")]


def proxy_signature(url: str, body: bytes, time: str, secret: str) -> str:
    return hashlib.md5(url.encode("utf-8") + body + time.encode("utf-8") + secret.encode("utf-8")).hexdigest()


def verify_proxy(url: str, body: bytes, time: str, signature: str, secret: str) -> bool:
    if not secret or not signature or not time:
        return False
    given = signature.strip().lower().encode()
    ok = False
    for candidate in [body, *_reserialised(body)]:
        ok |= hmac.compare_digest(proxy_signature(url, candidate, time, secret).encode(), given)
    return ok


# ---------------------------------------------------------------- platform-app events


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    modification: str  # "" when none; the number or the tech-card JSON string as text
    qty_milli: int
    price: int  # kopecks per unit


@dataclass(frozen=True, slots=True)
class Order:
    id: str  # ms timestamp at open: the order's key on the tablet
    name: str  # back-office transaction id ("" until synced)
    status: int
    date_close: int  # ms, 0 while open
    client_id: str
    products: tuple[Product, ...]
    total: int  # kopecks
    payed_bonus: int  # kopecks
    extras: Obj


@dataclass(frozen=True, slots=True)
class Returned:
    product_id: str
    modification: str
    qty_milli: int


@dataclass(frozen=True, slots=True)
class Settings:
    account: str
    spot_id: str
    tablet_id: str


@dataclass(frozen=True, slots=True)
class Loyalty:
    card: str = ""
    phone: str = ""
    redeem: int = 0
    redeem_max: bool = False


@dataclass(frozen=True, slots=True)
class PosEvent:
    event: str
    settings: Settings
    loyalty: Loyalty
    order: Order | None
    returned: tuple[Returned, ...] = ()


EVENTS = frozenset({"beforeOrderClose", "afterOrderClose", "orderProductChange", "returnFiscal",
                    "failedReturnFiscal", "applicationIconClicked"})


def _modification(value: Any, where: str) -> str:
    if value is None or value == 0 or value == "" or value == "0":
        return ""
    return text(value, where, limit=MAX_TEXT)


def parse_products(value: Any, where: str) -> tuple[Product, ...]:
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = [(str(i), v) for i, v in enumerate(value)]
    elif value is None:
        items = []
    else:
        raise BadInput("must be an object keyed 0, 1, … (or a list)", where)
    if len(items) > MAX_LINES:
        raise BadInput(f"at most {MAX_LINES} products", where)
    out = []
    for key, raw in items:
        at = f"{where}.{key}"[:200]
        p = obj(raw, at)
        out.append(Product(
            product_id=text(p.get("id", p.get("product_id")), f"{at}.id", required=True, limit=MAX_ID),
            modification=_modification(p.get("modification", p.get("modification_id")), f"{at}.modification"),
            qty_milli=count(p.get("count", 1), f"{at}.count"),
            price=money(p.get("price"), f"{at}.price", default=0),
        ))
    return tuple(out)


def parse_order(value: Any, where: str = "data.order") -> Order:
    o = obj(value, where)
    extras = o.get("extras")
    return Order(
        id=text(o.get("id"), f"{where}.id", required=True, limit=32),
        name=text(o.get("orderName"), f"{where}.orderName", limit=MAX_ID),
        status=whole(o.get("status"), f"{where}.status"),
        date_close=whole(o.get("dateClose"), f"{where}.dateClose"),
        client_id=text(o.get("clientId"), f"{where}.clientId", limit=MAX_ID),
        products=parse_products(o.get("products"), f"{where}.products"),
        total=money(o.get("total"), f"{where}.total", default=0),
        payed_bonus=money(o.get("payedBonus"), f"{where}.payedBonus", default=0),
        extras=extras if isinstance(extras, dict) else {},
    )


def parse_loyalty(value: Any) -> Loyalty:
    lo = obj(value, "loyalty", required=False)
    redeem = lo.get("redeem")
    redeem_max = isinstance(redeem, str) and redeem.strip().lower() == "max"
    return Loyalty(
        card=text(lo.get("card"), "loyalty.card", limit=MAX_ID),
        phone=text(lo.get("phone"), "loyalty.phone", limit=32),
        redeem=0 if redeem_max else max(0, whole(redeem, "loyalty.redeem")),
        redeem_max=redeem_max,
    )


def parse_pos_event(body: bytes) -> PosEvent:
    root = root_object(body)
    event = text(root.get("event"), "event", required=True, limit=64)
    if event not in EVENTS:
        raise BadInput(f"unknown event {event[:64]!r}", "event")
    s = obj(root.get("settings"), "settings")
    settings = Settings(
        account=text(s.get("accountUrl"), "settings.accountUrl", required=True, limit=MAX_ID),
        spot_id=text(s.get("spotId"), "settings.spotId", limit=MAX_ID),
        tablet_id=text(s.get("spotTabletId"), "settings.spotTabletId", limit=MAX_ID),
    )
    data = obj(root.get("data"), "data", required=event == "applicationIconClicked")
    order = None if data.get("order") is None else parse_order(data.get("order"))
    if order is None and event not in ("applicationIconClicked", "failedReturnFiscal"):
        raise BadInput("is required", "data.order")
    returned: tuple[Returned, ...] = ()
    if event == "returnFiscal":
        raw = data.get("products")
        if not isinstance(raw, list) or not raw or len(raw) > MAX_LINES:
            raise BadInput("must list the returned products", "data.products")
        returned = tuple(
            Returned(
                product_id=text((p := obj(r, f"data.products[{i}]")).get("product_id"),
                                f"data.products[{i}].product_id", required=True, limit=MAX_ID),
                modification=_modification(p.get("modification_id"), f"data.products[{i}].modification_id"),
                qty_milli=count(p.get("count", 1), f"data.products[{i}].count"),
            )
            for i, r in enumerate(raw)
        )
    return PosEvent(event, settings, parse_loyalty(root.get("loyalty")), order, returned)


# ---------------------------------------------------------------- answers


def dumps(value: Obj) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def render_bonus(bonus: int, print_text: str = "", extras: dict[str, str] | None = None) -> bytes:
    """``{"bonus":<currency units, 2 decimals>,"printText"?,"extras"?}`` (a JSON number, no float)."""
    rest: Obj = {}
    if print_text:
        rest["printText"] = print_text
    if extras:
        rest["extras"] = extras
    tail = dumps(rest)[1:]
    return ('{"bonus":' + rubles(bonus) + ("," + tail if tail != "}" else "}")).encode("utf-8")


render_accepted = http_edge.render_accepted  # our plugins' answer to a commit


WEBHOOK_ACCEPT = b'{"status":"accept"}'


def render_error(code: str, message: str, field: str = "") -> bytes:
    error: Obj = {"code": code, "message": message[:300]}
    if field:
        error["field"] = field[:200]
    return dumps({"status": "error", "error": error}).encode()
