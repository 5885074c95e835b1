"""The 1C / Manzana SOAP envelopes in and out (pure: bytes -> values, values -> bytes).

In: ``POST`` a SOAP 1.1 (or 1.2) envelope whose Body holds ``ProcessRequest{request{(ChequeRequest |
BalanceRequest)*}, orgName}`` in :data:`NS`. Read leniently, as real clients write it: children in
any order and any letter case (``RequestId``, ``EmissionId``), any prefixes or a default namespace,
a missing or unquoted SOAPAction (never read: the body says what it is), ``ChequeType`` in any case,
decimal commas and spaces between digit groups, a lone ``Item``, unknown elements ignored.

Two kinds of bad input, told apart by their exception:

- :class:`EnvelopeFault` (the envelope cannot be read: malformed or hostile XML, not an envelope,
  another SOAP version, ``mustUnderstand``, no ``ProcessRequest``, an unknown request kind): a SOAP
  Fault, ``Client`` (or ``VersionMismatch`` / ``MustUnderstand``), answered in the request's SOAP
  version;
- any other :class:`gateway.errors.BadInput` raised by :func:`read_cheque` / :func:`read_balance` (a
  readable request with a wrong field): a business answer with ReturnCode :data:`INVALID_FIELD`.

Out: strict: exactly the elements of :class:`ChequeAnswer` / :class:`BalanceAnswer`, in the order
of the schema (:mod:`drivers.onec.wsdl`), money with 2 decimals, percent and quantity with 3,
``Processed`` without a zone (local time of the store, milliseconds), like the Manzana server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from xml.sax.saxutils import escape

from gateway import fields, xml_fields
from gateway.errors import BadInput
from gateway.receipt import to_milli, to_minor

NS = "http://loyalty.manzanagroup.ru/loyalty.xsd"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
MAX_REQUESTS = 10  # requests in one ProcessRequest (the schema allows several)
MAX_ITEMS = 1000
OK, INVALID_FIELD, UNKNOWN_CARD, OVER_APPROVAL, UNKNOWN_CHEQUE = 0, 90001, 90002, 90003, 81380
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SPACES = str.maketrans("", "", " \u00a0\u202f")


class EnvelopeFault(BadInput):
    """The envelope cannot be processed: a SOAP Fault (``faultcode`` Client, VersionMismatch or
    MustUnderstand), in SOAP 1.2 when ``soap12``."""

    def __init__(self, message: str, where: str, *, faultcode: str = "Client", soap12: bool = False) -> None:
        super().__init__(message, where)
        self.faultcode = faultcode
        self.soap12 = soap12


# ---------------------------------------------------------------- requests


@dataclass(frozen=True)
class Card:
    kind: str  # CardNumber, MobilePhone, Track2 or Tracks
    value: str


@dataclass(frozen=True)
class Reference:
    """ChequeReference: the cheque a Return or Rollback names (empty fields: the request's own)."""

    organization: str
    business_unit: str
    pos: str
    number: str
    when: datetime


@dataclass(frozen=True)
class Item:
    position: int
    article: str
    name: str
    price: int  # kopecks
    qty_milli: int
    summ: int  # kopecks, before the till's discount
    discount: Decimal  # percent, as the till sent it
    summ_discounted: int  # kopecks, what the customer pays for the line before bonuses
    accrues: bool  # SignCharge (absent: yes)


@dataclass(frozen=True)
class Cheque:
    soft: bool  # ChequeType Soft (calculate) or Fiscal (commit)
    request_id: str
    when: datetime  # aware
    organization: str
    business_unit: str
    pos: str
    card: Card | None
    number: str
    operation: str  # Sale, Return or Rollback
    reference: Reference | None
    transaction_ref: int | None  # TransactionReference/TransactionID (a Rollback)
    summ: int
    discount: Decimal
    summ_discounted: int
    paid_by_bonus: int  # kopecks
    items: tuple[Item, ...]
    attributes: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Balance:
    request_id: str
    when: datetime
    organization: str
    business_unit: str
    pos: str
    card: Card | None


@dataclass(frozen=True)
class Envelope:
    """A readable ProcessRequest: its SOAP version and its requests, as (kind, element)."""

    soap12: bool
    requests: tuple[tuple[str, Any], ...]  # ("ChequeRequest" | "BalanceRequest", element)
    org_name: str


def _index(element: Any) -> dict[str, list[Any]]:
    """Child elements by lower-case local name (order and case drift tolerated)."""
    return _scan(element)[0]


def _scan(element: Any) -> tuple[dict[str, list[Any]], dict[str, str]]:
    """:func:`_index`, and the stripped text of each child that is plain text (the common case)."""
    found: dict[str, list[Any]] = {}
    leaf: dict[str, str] = {}
    for c in element:
        tag = c.tag
        if isinstance(tag, str):
            name = tag.rpartition("}")[2].lower()
            if name in found:
                found[name].append(c)
                leaf.pop(name, None)
            else:
                found[name] = [c]
                if len(c) == 0:
                    leaf[name] = (c.text or "").strip()
    return found, leaf


_PLAIN = re.compile(r"([0-9]{1,13})(?:\.([0-9]{1,12}))?")


def _scaled(raw: str, digits: int) -> int | None:
    """A plain non-negative decimal (``1532``, ``1532.5``) x 10^digits, half-up; None for any other form."""
    m = _PLAIN.fullmatch(raw)
    if m is None:
        return None
    frac = (m.group(2) or "").ljust(digits + 1, "0")
    whole: int = int(m.group(1)) * 10**digits
    return whole + int(frac[:digits] or 0) + (1 if frac[digits] >= "5" else 0)


def parse_envelope(body: bytes, *, max_bytes: int) -> Envelope:
    """The ProcessRequest of a SOAP 1.1/1.2 envelope; EnvelopeFault for anything unreadable."""
    try:
        root = xml_fields.parse(body, "Envelope", max_bytes=max_bytes)
    except EnvelopeFault:
        raise
    except BadInput as exc:
        raise EnvelopeFault(str(exc), exc.field) from None
    soap_ns = xml_fields.namespace(root)
    if xml_fields.name(root) != "Envelope":
        raise EnvelopeFault("not a SOAP envelope", xml_fields.name(root))
    if soap_ns not in (SOAP11, SOAP12):
        raise EnvelopeFault(f"send a SOAP 1.1 envelope ({SOAP11})", "Envelope", faultcode="VersionMismatch")
    soap12 = soap_ns == SOAP12
    parts = _index(root)
    for header in parts.get("header", []):
        for entry in header:
            if not isinstance(entry.tag, str):
                continue
            flag = xml_fields.attribute(entry, "mustUnderstand", "Envelope/Header").strip().lower()
            if flag in ("1", "true"):
                raise EnvelopeFault(
                    "a header marked mustUnderstand is not understood",
                    f"Envelope/Header/{xml_fields.name(entry)}",
                    faultcode="MustUnderstand",
                    soap12=soap12,
                )
    bodies = parts.get("body", [])
    if len(bodies) != 1:
        raise EnvelopeFault("an envelope needs one Body", "Envelope/Body", soap12=soap12)
    ops = [c for c in bodies[0] if isinstance(c.tag, str)]
    if (
        len(ops) != 1
        or xml_fields.name(ops[0]).lower() != "processrequest"
        or xml_fields.namespace(ops[0]) != NS
    ):
        got = "nothing" if not ops else f"{{{xml_fields.namespace(ops[0])}}}{xml_fields.name(ops[0])}"
        raise EnvelopeFault(f"send one ProcessRequest in {NS} (got {got})", "Envelope/Body", soap12=soap12)
    op = _index(ops[0])
    requests: list[tuple[str, Any]] = []
    for holder in op.get("request", []):
        for el in holder:
            if not isinstance(el.tag, str):
                continue
            kind = {"chequerequest": "ChequeRequest", "balancerequest": "BalanceRequest"}.get(
                xml_fields.name(el).lower()
            )
            if kind is None:
                raise EnvelopeFault(
                    f"{xml_fields.name(el)} is not supported: send ChequeRequest or BalanceRequest",
                    f"ProcessRequest/request/{xml_fields.name(el)}",
                    soap12=soap12,
                )
            requests.append((kind, el))
    if not requests:
        raise EnvelopeFault(
            "ProcessRequest/request holds no ChequeRequest or BalanceRequest",
            "ProcessRequest/request",
            soap12=soap12,
        )
    if len(requests) > MAX_REQUESTS:
        raise EnvelopeFault(
            f"at most {MAX_REQUESTS} requests in one call", "ProcessRequest/request", soap12=soap12
        )
    org = op.get("orgname", [])
    return Envelope(soap12, tuple(requests), _text(org[0], "ProcessRequest/orgName") if len(org) == 1 else "")


def _text(element: Any, where: str, *, required: bool = False, limit: int = 256) -> str:
    return xml_fields.text(element, where, required=required, limit=limit)


class _Reader:
    """One request element's children, read by name whatever their order and case."""

    def __init__(self, element: Any, where: str) -> None:
        self.element, self.where = element, where
        self.parts, self.leaf = _scan(element)

    def one(self, tag: str) -> Any | None:
        found = self.parts.get(tag.lower(), [])
        if len(found) > 1:
            raise BadInput("must appear once", f"{self.where}/{tag}")
        return found[0] if found else None

    def text(self, tag: str, *, required: bool = False, limit: int = 256) -> str:
        value = self.leaf.get(tag.lower())
        if value and len(value) <= limit:  # the common case: one element of plain text
            return value
        return _text(self.one(tag), f"{self.where}/{tag}", required=required, limit=limit)

    def decimal(self, tag: str, *, default: Decimal | None = None) -> Decimal:
        raw = self.text(tag, required=default is None, limit=64)
        return number(raw, f"{self.where}/{tag}") if raw else default or Decimal(0)

    def money(self, tag: str, *, default: int | None = None) -> int:
        raw = self.text(tag, required=default is None, limit=64)
        if not raw:
            return default or 0
        fast = _scaled(raw, 2)
        if fast is not None:
            return fast
        kop = to_minor(number(raw, f"{self.where}/{tag}"), f"{self.where}/{tag}")
        if kop < 0:
            raise BadInput("must not be negative (a Return states its sums positive)", f"{self.where}/{tag}")
        return kop

    def when(self, tag: str, zone: tzinfo, *, required: bool = True) -> datetime | None:
        return moment(self.text(tag, required=required, limit=64), f"{self.where}/{tag}", zone)

    def card(self) -> Card | None:
        el = self.one("Card")
        if el is None:
            return None
        inner = _Reader(el, f"{self.where}/Card")
        for kind in ("CardNumber", "MobilePhone", "Track2", "Tracks"):
            sub = inner.one(kind)
            if sub is not None and sub.text is None and len(sub):  # <MobilePhone><Number>… (a newer schema)
                sub = _Reader(sub, f"{inner.where}/{kind}").one("Number")
            value = _text(sub, f"{inner.where}/{kind}") if sub is not None else ""
            if value:
                return Card(kind, value)
        return None


def number(raw: str, where: str) -> Decimal:
    """A decimal as 1C and PHP write it: ``1532.5``, ``1532,50``, ``1 532,50``, ``0.30000000000000004``."""
    text = raw.translate(_SPACES)
    if "," in text and "." not in text and text.count(",") == 1:
        text = text.replace(",", ".")
    return fields.decimal(text, where)


def moment(raw: str, where: str, zone: tzinfo) -> datetime | None:
    """An xs:dateTime; without an offset it is the store's local time (``zone``)."""
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise BadInput("must be an xs:dateTime like 2025-03-14T19:02:11+03:00", where) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=zone)


def _item(el: Any, where: str) -> Item:
    r = _Reader(el, where)
    price, summ = r.money("Price"), r.money("Summ", default=-1)
    raw_qty = r.text("Quantity", required=True, limit=64)
    qty = _scaled(raw_qty, 3)
    if qty is None:
        qty = to_milli(number(raw_qty, f"{where}/Quantity"), f"{where}/Quantity")
    if qty <= 0:
        raise BadInput("must be positive", f"{where}/Quantity")
    summ = fields.line_amount(price, qty) if summ < 0 else summ
    raw_position = r.text("PositionNumber", limit=12)
    position = (
        int(raw_position)
        if raw_position.isascii() and raw_position.isdigit()
        else fields.integer(raw_position, f"{where}/PositionNumber", lo=0, hi=10**9)
    )
    sign = r.text("SignCharge", limit=8)
    return Item(
        position=position,
        article=r.text("Article"),
        name=r.text("ArticleName"),
        price=price,
        qty_milli=qty,
        summ=summ,
        discount=r.decimal("Discount", default=Decimal(0)),
        summ_discounted=r.money("SummDiscounted", default=summ),
        accrues=sign.strip() not in ("0", "false"),
    )


def read_cheque(el: Any, zone: tzinfo) -> Cheque:
    """A ChequeRequest; BadInput naming the element for a wrong field."""
    where = "ChequeRequest"
    r = _Reader(el, where)
    kind = xml_fields.attribute(el, "ChequeType", where, limit=16).strip().lower()
    if kind not in ("soft", "fiscal"):
        raise BadInput("ChequeType must be Soft or Fiscal", f"{where}/@ChequeType")
    op = r.text("OperationType", required=True, limit=16).strip().capitalize()
    if op not in ("Sale", "Return", "Rollback"):
        raise BadInput("must be Sale, Return or Rollback", f"{where}/OperationType")
    when = r.when("DateTime", zone)
    assert when is not None
    items = [_item(x, f"{where}/Item[{i}]") for i, x in enumerate(r.parts.get("item", []), 1)]
    if len(items) > MAX_ITEMS:
        raise BadInput(f"at most {MAX_ITEMS} items", f"{where}/Item")
    if len({i.position for i in items}) != len(items):
        raise BadInput("PositionNumber must be unique in a cheque", f"{where}/Item")
    ref = None
    ref_el = r.one("ChequeReference")
    if ref_el is not None:
        rr = _Reader(ref_el, f"{where}/ChequeReference")
        ref_when = rr.when("DateTime", zone)
        assert ref_when is not None
        ref = Reference(
            rr.text("Organization"),
            rr.text("BusinessUnit"),
            rr.text("POS"),
            rr.text("Number", required=True),
            ref_when,
        )
    tx = None
    tx_el = r.one("TransactionReference")
    if tx_el is not None:
        raw = _Reader(tx_el, f"{where}/TransactionReference").text("TransactionID", required=True, limit=24)
        if not re.fullmatch(r"-?[0-9]{1,19}", raw.strip()) or not -(2**63) <= int(raw) < 2**63:
            raise BadInput("must be a 64-bit integer", f"{where}/TransactionReference/TransactionID")
        tx = int(raw)
    sums_needed = op != "Rollback"
    attributes = []
    for i, a in enumerate(r.parts.get("extendedattribute", []), 1):
        ar = _Reader(a, f"{where}/ExtendedAttribute[{i}]")
        attributes.append((ar.text("Key", limit=64), ar.text("Value", limit=4096)))
    summ = r.money("Summ", default=None if sums_needed and not items else sum(i.summ for i in items))
    return Cheque(
        soft=kind == "soft",
        request_id=r.text("RequestID"),
        when=when,
        organization=r.text("Organization"),
        business_unit=r.text("BusinessUnit"),
        pos=r.text("POS"),
        card=r.card(),
        number=r.text("Number"),
        operation=op,
        reference=ref,
        transaction_ref=tx,
        summ=summ,
        discount=r.decimal("Discount", default=Decimal(0)),
        summ_discounted=r.money(
            "SummDiscounted", default=sum(i.summ_discounted for i in items) if items else summ
        ),
        paid_by_bonus=r.money("PaidByBonus", default=0),
        items=tuple(items),
        attributes=tuple(attributes),
    )


def read_balance(el: Any, zone: tzinfo) -> Balance:
    """A BalanceRequest; BadInput naming the element for a wrong field."""
    r = _Reader(el, "BalanceRequest")
    when = r.when("DateTime", zone)
    assert when is not None
    return Balance(
        r.text("RequestID"), when, r.text("Organization"), r.text("BusinessUnit"), r.text("POS"), r.card()
    )


def request_id_of(el: Any) -> str:
    """The RequestID of a request element whatever else is wrong with it ("" when unreadable)."""
    try:
        return _Reader(el, "request").text("RequestID")
    except BadInput:
        return ""


# ---------------------------------------------------------------- answers


@dataclass(frozen=True)
class ItemAnswer:
    position: int
    article: str
    price: int
    qty_milli: int
    summ: int
    discount: Decimal
    summ_discounted: int
    available: int  # kopecks of this line bonuses may pay
    writeoff: int  # kopecks of this line paid by bonuses


@dataclass(frozen=True)
class ChequeAnswer:
    transaction_id: int
    request_id: str
    processed: datetime  # the store's local time, naive
    return_code: int
    message: str
    card_number: str = ""
    card_balance: int | None = None  # kopecks; None: not known now (offline, no card)
    level_name: str = ""
    summ: int = 0
    discount: Decimal = Decimal(0)
    summ_discounted: int = 0
    charged: int = 0
    available: int = 0
    writeoff: int = 0
    items: tuple[ItemAnswer, ...] = ()


@dataclass(frozen=True)
class BalanceAnswer:
    transaction_id: int
    request_id: str
    processed: datetime
    return_code: int
    message: str
    card_number: str = ""
    card_balance: int | None = None
    level_name: str = ""
    full_name: str = ""


def _safe(value: str) -> str:
    return escape(_NOT_XML.sub("\ufffd", value))


def _percent(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.001"), rounding=ROUND_HALF_UP))


def _qty(milli: int) -> str:
    whole, frac = divmod(milli, 1000)
    return f"{whole}.{frac:03d}"


def _processed(when: datetime) -> str:
    return when.replace(tzinfo=None).isoformat(timespec="milliseconds")


def _head(out: list[str], a: ChequeAnswer | BalanceAnswer) -> None:
    out.append(f"<TransactionID>{a.transaction_id}</TransactionID>")
    if a.request_id:
        out.append(f"<RequestID>{_safe(a.request_id)}</RequestID>")
    out.append(
        f"<Processed>{_processed(a.processed)}</Processed><ReturnCode>{a.return_code}</ReturnCode>"
        f"<Message>{_safe(a.message)}</Message>"
    )
    if a.card_number:
        out.append(f"<CardNumber>{_safe(a.card_number)}</CardNumber>")
    if a.card_balance is not None:
        balance = fields.rubles(a.card_balance)
        out.append(f"<CardBalance>{balance}</CardBalance><CardActiveBalance>{balance}</CardActiveBalance>")
    if a.level_name:
        out.append(f"<LevelName>{_safe(a.level_name)}</LevelName>")


def _cheque(out: list[str], a: ChequeAnswer) -> None:
    out.append("<ChequeResponse>")
    _head(out, a)
    out.append(
        f"<Summ>{fields.rubles(a.summ)}</Summ><Discount>{_percent(a.discount)}</Discount>"
        f"<SummDiscounted>{fields.rubles(a.summ_discounted)}</SummDiscounted>"
        f"<ChargedBonus>{fields.rubles(a.charged)}</ChargedBonus>"
        f"<AvailablePayment>{fields.rubles(a.available)}</AvailablePayment>"
        f"<WriteoffBonus>{fields.rubles(a.writeoff)}</WriteoffBonus>"
    )
    for i in a.items:
        out.append(f"<Item><PositionNumber>{i.position}</PositionNumber>")
        if i.article:
            out.append(f"<Article>{_safe(i.article)}</Article>")
        out.append(
            f"<Price>{fields.rubles(i.price)}</Price><Quantity>{_qty(i.qty_milli)}</Quantity>"
            f"<Summ>{fields.rubles(i.summ)}</Summ><Discount>{_percent(i.discount)}</Discount>"
            f"<SummDiscounted>{fields.rubles(i.summ_discounted)}</SummDiscounted>"
            f"<AvailablePayment>{fields.rubles(i.available)}</AvailablePayment>"
            f"<WriteoffBonus>{fields.rubles(i.writeoff)}</WriteoffBonus></Item>"
        )
    out.append("</ChequeResponse>")


def _balance(out: list[str], a: BalanceAnswer) -> None:
    out.append("<BalanceResponse>")
    _head(out, a)
    if a.full_name:
        out.append(f"<FullName>{_safe(a.full_name)}</FullName>")
    out.append("</BalanceResponse>")


def _envelope(soap12: bool, inner: str) -> bytes:
    soap = SOAP12 if soap12 else SOAP11
    return (
        f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{soap}"><soap:Body>'
        f"{inner}</soap:Body></soap:Envelope>"
    ).encode()


def render(answers: list[ChequeAnswer | BalanceAnswer], *, soap12: bool = False) -> bytes:
    """The ProcessRequestResponse envelope: one answer per request, in the request's order."""
    out = [f'<ProcessRequestResponse xmlns="{NS}"><ProcessRequestResult>']
    for a in answers:
        (_cheque(out, a) if isinstance(a, ChequeAnswer) else _balance(out, a))
    out.append("</ProcessRequestResult></ProcessRequestResponse>")
    return _envelope(soap12, "".join(out))


def fault(faultcode: str, message: str, *, error: str, field: str = "", soap12: bool = False) -> bytes:
    """A SOAP Fault: ``faultcode`` Client, Server, VersionMismatch or MustUnderstand (in SOAP 1.2:
    Sender, Receiver, VersionMismatch, MustUnderstand), our error code and field in ``detail``."""
    detail = f'<Error xmlns="{NS}"><Code>{_safe(error)}</Code>'
    detail += f"<Field>{_safe(field)}</Field></Error>" if field else "</Error>"
    text = _safe(message[:500])
    if soap12:
        code = {"Client": "Sender", "Server": "Receiver"}.get(faultcode, faultcode)
        inner = (
            f"<soap:Fault><soap:Code><soap:Value>soap:{code}</soap:Value></soap:Code><soap:Reason>"
            f'<soap:Text xml:lang="ru">{text}</soap:Text></soap:Reason><soap:Detail>{detail}</soap:Detail>'
            "</soap:Fault>"
        )
    else:
        inner = (
            f"<soap:Fault><faultcode>soap:{faultcode}</faultcode><faultstring>{text}</faultstring>"
            f"<detail>{detail}</detail></soap:Fault>"
        )
    return _envelope(soap12, inner)


def bad_input(exc: BadInput) -> bytes:
    """The fault for input the guard refused (400)."""
    if isinstance(exc, EnvelopeFault):
        return fault(
            exc.faultcode, f"Запрос не разобран: {exc}", error="BAD_INPUT", field=exc.field, soap12=exc.soap12
        )
    return fault("Client", f"Запрос отклонён: {exc}", error="BAD_INPUT", field=exc.field)


def other(status: int, code: str, message: str) -> bytes:
    return fault("Client" if status < 500 else "Server", message, error=code)


# ---------------------------------------------------------------- remembered answers


def dump_answer(a: ChequeAnswer) -> str:
    """A Fiscal answer as kept in the driver state (compact JSON; Decimals and times as text)."""

    def plain(value: Any) -> Any:
        return str(value) if isinstance(value, Decimal | datetime) else value

    data = asdict(a)
    data["items"] = [{k: plain(v) for k, v in i.items()} for i in data["items"]]
    return json.dumps({k: plain(v) for k, v in data.items()}, separators=(",", ":"), ensure_ascii=False)


def load_answer(raw: str) -> ChequeAnswer:
    """:func:`dump_answer` read back; ValueError when the stored text is not one."""
    try:
        data = json.loads(raw)
        conv: dict[str, Callable[[Any], Any]] = {"discount": Decimal, "processed": datetime.fromisoformat}
        items = tuple(
            ItemAnswer(**{k: conv.get(k, _same)(v) for k, v in i.items()}) for i in data.pop("items")
        )
        return ChequeAnswer(items=items, **{k: conv.get(k, _same)(v) for k, v in data.items()})
    except (TypeError, KeyError, AttributeError, ArithmeticError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a remembered answer: {exc}") from None


def _same(value: Any) -> Any:
    return value
