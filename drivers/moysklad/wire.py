"""MoySklad Loyalty API 1.0 bodies in and out: pure (bytes -> values, values -> bytes).

Written from ../shared/protocols/moysklad.md (see README.md, "Sources and quirks"). Invariants:
- money read from MoySklad is rubles with up to 2 decimals (positions, cash sums) except gift card
  ``paymentSum``, which is kopecks; it comes out of here as integer kopecks, quantities as integer
  thousandths; floats never come out of a reader;
- an empty ``href``/``id`` reads as absent (MoySklad's examples send ``""`` for document metas);
- ``preferredBonusToSpend`` is read at the top level or inside ``bonusProgram``; null or absent is
  "no preference" (the maximum spendable is answered); a negative number is refused;
- a return's ``agent`` is read flat (``{href,id}``) or wrapped (``{meta:{href,id}}``), or absent;
- a counterparty's phone is informational: one that is not a phone number reads as none (the
  code endpoints then refuse for want of a phone; a recalc or a sale goes on);
- the syncId of ``/counterparty/verify`` is the last path segment of ``meta.href``;
- answers carry numbers (never the strings of MoySklad's gift card example); errors are always
  ``{"errors":[{"error","code","error_message"[,"parameter"]}]}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from gateway import fields
from gateway.errors import BadInput
from gateway.receipt import MAX_AMOUNT, MAX_QTY_MILLI, IdKind

EARNING, SPENDING = "EARNING", "SPENDING"
STATUS_CHECKS = ("UNCHECKED", "CHECKED", "IGNORE")
MAX_POSITIONS = 1000
MAX_POINTS = 10**9
CODE_AUTH = 999  # the code MoySklad's demo answers for every error; ours for everything but 28001
CODE_CONFIRM = 28001  # "the customer must confirm registration by code" (documented, POST /counterparty)
MAX_CASHIER_TEXT = 140  # messageForCashier


@dataclass(frozen=True, slots=True)
class Agent:
    """A counterparty as MoySklad sends it (customer fields are informational)."""

    ms_id: str = ""
    href: str = ""
    name: str = ""
    phone: str = ""
    card: str = ""
    email: str = ""
    birth_date: str = ""
    sex: str = ""
    sync_id: str = ""
    status_check: str = ""


@dataclass(frozen=True, slots=True)
class Position:
    """One receipt position: per-unit ``price`` and (sale/return) ``discounted`` in kopecks."""

    assortment_id: str
    href: str
    quantity: int  # thousandths
    price: int
    discounted: int | None = None
    sync_id: str = ""
    sn: tuple[Any, ...] = ()
    pack: Any = None


@dataclass(frozen=True, slots=True)
class Recalc:
    store: str
    agent: Agent
    positions: tuple[Position, ...]
    spending: bool
    preferred: int | None  # None: no preference, answer the maximum spendable
    agent_echo: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GiftPayment:
    card_id: str
    name: str
    kopecks: int


@dataclass(frozen=True, slots=True)
class Document:
    """A sale (``retaildemand``) or a return (``retailsalesreturn``)."""

    store: str
    doc_id: str
    name: str
    moment: str
    agent: Agent | None
    positions: tuple[Position, ...]
    spend: int = 0
    earn: int = 0
    cash: int = 0  # kopecks
    no_cash: int = 0  # kopecks (a return's is documented in kopecks already)
    gift_cards: tuple[GiftPayment, ...] = ()
    demand_id: str = ""  # a return: the sale it returns


@dataclass(frozen=True, slots=True)
class CodeAsk:
    """``/counterparty/verify`` or ``/retaildemand/verify``: who wants a code."""

    store: str
    phone: str
    counterparty: str  # the syncId (registration) or counterpartyId (spending)
    agent: Agent | None = None


# ---------------------------------------------------------------- readers


def _store(body: Mapping[str, Any]) -> str:
    store = fields.obj(body.get("retailStore"), "retailStore")
    meta = fields.obj(store.get("meta"), "retailStore.meta")
    return fields.ident(meta.get("id"), "retailStore.meta.id")


def _meta(value: object, where: str, *, required: bool = False) -> tuple[str, str]:
    """(id, href) of a meta; empty strings read as absent."""
    meta = fields.obj(value, where) if required else fields.opt_obj(value, where)
    return (
        fields.ident(meta.get("id"), f"{where}.id", required=required),
        fields.text(meta.get("href"), f"{where}.href", limit=1024),
    )


def agent(value: object, where: str, *, flat_ok: bool = False) -> Agent:
    """A counterparty block (``meta`` + fields); ``flat_ok``: ``{href,id}`` without ``meta`` (returns)."""
    raw = fields.obj(value, where)
    if flat_ok and "meta" not in raw:
        ms_id, href = _meta(raw, where)
    else:
        ms_id, href = _meta(raw.get("meta"), f"{where}.meta")
    status = fields.text(raw.get("statusCheck"), f"{where}.statusCheck", limit=16)
    if status and status not in STATUS_CHECKS:
        raise BadInput(f"must be one of {', '.join(STATUS_CHECKS)}", f"{where}.statusCheck")
    sex = fields.text(raw.get("sex"), f"{where}.sex", limit=16)
    phone = fields.text(raw.get("phone"), f"{where}.phone", limit=64)
    if phone:  # informational (a customer card may hold "+7 903 … доб. 12"): one we cannot read is none
        try:
            phone = fields.customer(IdKind.PHONE, phone, f"{where}.phone").value
        except BadInput:
            phone = ""
    return Agent(
        ms_id=ms_id,
        href=href,
        name=fields.text(raw.get("name"), f"{where}.name", limit=512),
        phone=phone,
        card=fields.text(raw.get("discountCardNumber"), f"{where}.discountCardNumber", limit=255),
        email=fields.text(raw.get("email"), f"{where}.email", limit=255),
        birth_date=fields.text(raw.get("birthDate"), f"{where}.birthDate", limit=32),
        sex=sex,
        sync_id=fields.text(raw.get("syncId"), f"{where}.syncId", limit=255),
        status_check=status,
    )


def _positions(value: object, *, sale: bool) -> tuple[Position, ...]:
    out: list[Position] = []
    for i, pos in enumerate(fields.objs(value, "positions", required=True, limit=MAX_POSITIONS)):
        where = f"positions[{i}]"
        assortment = fields.obj(pos.get("assortment"), f"{where}.assortment")
        ms_id, href = _meta(assortment.get("meta"), f"{where}.assortment.meta", required=True)
        qty = fields.milli(pos.get("quantity"), f"{where}.quantity", signed=False)
        if not 0 < qty <= MAX_QTY_MILLI:
            raise BadInput("must be positive and at most 10^6", f"{where}.quantity")
        price = fields.kopecks(pos.get("price"), f"{where}.price", signed=False)
        if price > MAX_AMOUNT:
            raise BadInput("must be at most 10^11 rubles", f"{where}.price")
        discounted = None
        if sale and pos.get("discountedPrice") is not None:
            discounted = fields.kopecks(pos.get("discountedPrice"), f"{where}.discountedPrice", signed=False)
        sn = tuple(fields.opt_lst(pos.get("sn"), f"{where}.sn", limit=10_000))
        pack = pos.get("pack")
        if pack is not None:
            fields.obj(pack, f"{where}.pack")
        out.append(
            Position(
                ms_id,
                href,
                qty,
                price,
                discounted,
                fields.text(assortment.get("syncId"), f"{where}.assortment.syncId", limit=255),
                sn,
                pack,
            )
        )
    if not out:
        raise BadInput("a receipt needs at least one position", "positions")
    return tuple(out)


def _points(value: object, where: str) -> int:
    return fields.integer(value, where, lo=0, hi=MAX_POINTS)


def parse_recalc(body: bytes) -> Recalc:
    doc = fields.load_object(body)
    program = fields.opt_obj(doc.get("bonusProgram"), "bonusProgram")
    kind = fields.text(program.get("transactionType"), "bonusProgram.transactionType", limit=16) or EARNING
    if kind not in (EARNING, SPENDING):
        raise BadInput("must be EARNING or SPENDING", "bonusProgram.transactionType")
    preferred: int | None = None
    for where, raw in (
        ("preferredBonusToSpend", doc.get("preferredBonusToSpend")),
        ("bonusProgram.preferredBonusToSpend", program.get("preferredBonusToSpend")),
    ):
        if raw is not None:
            preferred = _points(raw, where)
            break
    echo = fields.obj(doc.get("agent"), "agent")
    return Recalc(
        store=_store(doc),
        agent=agent(echo, "agent"),
        positions=_positions(doc.get("positions"), sale=False),
        spending=kind == SPENDING,
        preferred=preferred,
        agent_echo=echo,
    )


def parse_create(body: bytes) -> tuple[str, Agent]:
    """``POST /counterparty``: (retail store, the new customer); ``meta.id`` is required."""
    doc = fields.load_object(body)
    store = _store(doc)
    who = agent(doc, "body")
    if not who.ms_id:
        raise BadInput("is required", "meta.id")
    return store, who


def parse_detail(body: bytes) -> tuple[str, Agent]:
    """``POST /counterparty/detail``: identification is by ``meta.id``."""
    return parse_create(body)


def parse_registration_code(body: bytes) -> CodeAsk:
    """``POST /counterparty/verify``: meta carries only the ``posap`` href ending in the syncId."""
    doc = fields.load_object(body)
    store = _store(doc) if doc.get("retailStore") is not None else ""  # the doc's example has none
    who = agent(doc, "body")
    sync_id = who.href.rstrip("/").rpartition("/")[2] if who.href else who.sync_id
    if not who.phone:
        raise BadInput("a phone is needed to send a code", "phone")
    return CodeAsk(store=store, phone=who.phone, counterparty=sync_id or who.ms_id, agent=who)


def parse_spending_code(body: bytes) -> CodeAsk:
    """``POST /retaildemand/verify``: ``counterpartyId`` (required) and ``phone``."""
    doc = fields.load_object(body)
    store = _store(doc)
    counterparty = fields.ident(doc.get("counterpartyId"), "counterpartyId")
    phone = fields.text(doc.get("phone"), "phone", limit=64)
    if phone:
        phone = fields.customer(IdKind.PHONE, phone, "phone").value
    return CodeAsk(store=store, phone=phone, counterparty=counterparty)


def _document(doc: Mapping[str, Any], *, sale: bool) -> Document:
    store = _store(doc)
    doc_id, _ = _meta(doc.get("meta"), "meta")
    who = None
    raw_agent = doc.get("agent")
    if raw_agent is not None and raw_agent != {}:
        who = agent(raw_agent, "agent", flat_ok=not sale)
        if not who.ms_id:
            who = None
    program = fields.opt_obj(doc.get("bonusProgram"), "bonusProgram") if sale else {}
    gifts: list[GiftPayment] = []
    for i, card in enumerate(fields.objs(doc.get("giftCards"), "giftCards", limit=100) if sale else []):
        where = f"giftCards[{i}]"
        kop = fields.integer(card.get("paymentSum"), f"{where}.paymentSum", required=True, lo=0, hi=10**13)
        gifts.append(
            GiftPayment(
                fields.ident(card.get("id"), f"{where}.id"),
                fields.ident(card.get("name"), f"{where}.name"),
                kop,
            )
        )
    demand_id = ""
    if not sale:
        demand = fields.opt_obj(doc.get("demand"), "demand")
        demand_id, _ = _meta(demand.get("meta"), "demand.meta")
    no_cash = fields.kopecks(doc.get("noCashSum"), "noCashSum", default=0, signed=False)
    if not sale:  # Q3: a return's noCashSum is documented in kopecks, a sale's in rubles
        no_cash = (no_cash + 50) // 100  # read as rubles x 100 above: back to the kopecks it is
    return Document(
        store=store,
        doc_id=doc_id,
        name=fields.text(doc.get("name"), "name", limit=255),
        moment=fields.text(doc.get("moment"), "moment", limit=32),
        agent=who,
        positions=_positions(doc.get("positions"), sale=True),
        spend=_points(program.get("bonusValueToSpend"), "bonusProgram.bonusValueToSpend"),
        earn=_points(program.get("bonusValueToEarn"), "bonusProgram.bonusValueToEarn"),
        cash=fields.kopecks(doc.get("cashSum"), "cashSum", default=0, signed=False),
        no_cash=no_cash,
        gift_cards=tuple(gifts),
        demand_id=demand_id,
    )


def parse_sale(body: bytes) -> Document:
    return _document(fields.load_object(body), sale=True)


def parse_return(body: bytes) -> Document:
    return _document(fields.load_object(body), sale=False)


def query(params: Mapping[str, str], name: str, *, required: bool = True, limit: int = 255) -> str:
    """A GET parameter (``search``, ``name``, ``retailStoreId``)."""
    return fields.text(params.get(name), name, required=required, limit=limit)


# ---------------------------------------------------------------- writers


def rubles(kopecks: int) -> Decimal:
    return Decimal(kopecks).scaleb(-2)


def _number(value: Decimal) -> float | int:
    """A JSON number as MoySklad reads it: exact for 2 (money) and 3 (quantity) decimals."""
    return int(value) if value == value.to_integral_value() else float(value)


def _dump(doc: object) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def render_errors(error: str, message: str, *, code: int = CODE_AUTH, parameter: str = "") -> bytes:
    item: dict[str, Any] = {"error": error, "code": code, "error_message": message}
    if parameter:
        item["parameter"] = parameter
    return _dump({"errors": [item]})


def render_rows(rows: Sequence[Mapping[str, Any]]) -> bytes:
    return _dump({"rows": list(rows)})


def render_balance(points: int) -> bytes:
    return _dump({"bonusProgram": {"agentBonusBalance": points}})


def render_code(code: str, time_for_repeat: int, message: str) -> bytes:
    return _dump(
        {
            "verificationCode": code,
            "timeForRepeat": time_for_repeat,
            "messageForCashier": message[:MAX_CASHIER_TEXT],
        }
    )


@dataclass(frozen=True, slots=True)
class PricedPosition:
    """An answered position: the request position (or a split part of it) with its final price."""

    source: Position
    quantity: int  # thousandths
    discounted: int  # kopecks per unit
    percent: Decimal  # 0..100, 2 decimals
    sn: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class RecalcAnswer:
    positions: tuple[PricedPosition, ...]
    spending: bool
    balance: int
    spend: int
    earn: int
    paid_by_points: int  # kopecks
    extra_info: str
    need_code: bool


def position_json(p: PricedPosition) -> dict[str, Any]:
    out: dict[str, Any] = {
        "assortment": {"meta": {"href": p.source.href, "id": p.source.assortment_id}},
        "quantity": _number(Decimal(p.quantity).scaleb(-3)),
        "price": _number(rubles(p.source.price)),
        "discountPercent": _number(p.percent),
        "discountedPrice": _number(rubles(p.discounted)),
    }
    if p.sn:
        out["sn"] = list(p.sn)
    if p.source.pack is not None:
        out["pack"] = p.source.pack
    return out


def render_recalc(agent_echo: Mapping[str, Any], ans: RecalcAnswer) -> bytes:
    program: dict[str, Any] = {
        "transactionType": SPENDING if ans.spending else EARNING,
        "agentBonusBalance": ans.balance,
        "bonusValueToSpend": ans.spend,
        "bonusValueToEarn": ans.earn,
        "agentBonusBalanceAfter": ans.balance - ans.spend + ans.earn,
        "paidByBonusPoints": _number(rubles(ans.paid_by_points)),
    }
    if ans.extra_info:
        program["receiptExtraInfo"] = ans.extra_info
    return _dump(
        {
            "agent": dict(agent_echo),
            "positions": [position_json(p) for p in ans.positions],
            "bonusProgram": program,
            "needVerification": ans.need_code,
        }
    )


def render_gift_card(name: str, card_id: str, status: str, expires: str, current: int, initial: int) -> bytes:
    out: dict[str, Any] = {"name": name, "id": card_id, "status": status, "initialBalance": initial}
    if status in ("CAN_BE_USED", "PARTIALLY_REDEEMED"):
        out["currentBalance"] = current
    if expires:
        out["expireDate"] = expires
    return _dump(out)
