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
no other exception leaves the ``parse_*`` functions. The readers are :mod:`gateway.fields` with
Poster's settings (below): no reader of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

from gateway import fields, http_edge
from gateway.errors import BadInput
from gateway.fields import rubles
from gateway.receipt import MAX_LINES

MAX_ID = 128
MAX_TEXT = fields.MAX_TEXT
Obj = dict[str, Any]

# ---------------------------------------------------------------- Poster's settings of the shared readers

text = partial(fields.text, whole=True)  # ids come as strings or numbers (whole only)
obj = partial(fields.obj, encoded=True)  # an object may come as a JSON string holding it
opt_obj = partial(fields.opt_obj, encoded=True)
money = partial(fields.kopecks, signed=False, spaces=True)  # currency units -> kopecks, never negative
count = partial(fields.milli, signed=False, spaces=True)  # weight goods are fractional; never negative
whole = fields.integer


def root_object(body: bytes) -> Obj:
    """The body's JSON object; a JSON string holding the object is decoded once more."""
    return fields.load_object(body, unwrap=True)


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
    data = _signed_data(root.get("data"))
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


def _signed_data(value: Any) -> str | None:
    """``data`` as Poster's verifier puts it into the md5: a string exactly as received (any
    content: the driver never needs to decode it), a whole number as PHP prints it; None when
    absent. Anything else (an object, an array, a fraction, a boolean) has no defined text in the
    signature: BadInput."""
    if value is None or isinstance(value, str):
        return value
    if type(value) is int and abs(value) < 10**18:
        return str(value)
    whole = isinstance(value, Decimal) and value.is_finite() and value.adjusted() < 18
    if whole and value == value.to_integral_value():
        return str(int(value))
    raise BadInput("must be the JSON-encoded string Poster signs", "data")


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
    """A webhook's ``data`` as an object: a JSON string, possibly of JSON strings (decoded up to 3
    times). For a reader of ``data``; the driver's webhooks need none, so it never refuses a
    signed webhook for its ``data``."""
    value = fields.embedded(data, "data", times=3)
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
class Loyalty(fields.Entered):
    @property
    def redeem(self) -> int:
        """Points to redeem (the name the mapping reads)."""
        return self.redeem_points


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
    lo = opt_obj(value, "loyalty")
    points, redeem_max = fields.redeem(lo.get("redeem"), "loyalty.redeem", negative_as_zero=True)
    return Loyalty(
        card=text(lo.get("card"), "loyalty.card", limit=MAX_ID),
        phone=text(lo.get("phone"), "loyalty.phone", limit=32),
        redeem_points=points, redeem_max=redeem_max,
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
    data = (obj if event == "applicationIconClicked" else opt_obj)(root.get("data"), "data")
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


def render_guest(*, found: bool, name: str = "", balance: int | None = None, offline: bool = False,
                 earn: int | None = None, spend: int | None = None) -> bytes:
    """The app's guest popup: ``{"found","name","balance","offline"[,"earn","spend"]}``; points are
    whole numbers, ``balance`` null when unknown (offline); ``earn``/``spend`` (what the order would
    accrue, the most it may redeem) only when an order was priced, and only for a found guest."""
    answer: Obj = {"found": found, "name": name if found else "", "balance": balance if found else None,
                   "offline": offline}
    if found and earn is not None and spend is not None:
        answer["earn"], answer["spend"] = earn, spend
    return dumps(answer).encode()


render_accepted = http_edge.render_accepted  # our plugins' answer to a commit


WEBHOOK_ACCEPT = b'{"status":"accept"}'


def render_error(code: str, message: str, field: str = "") -> bytes:
    error: Obj = {"code": code, "message": message[:300]}
    if field:
        error["field"] = field[:200]
    return dumps({"status": "error", "error": error}).encode()
