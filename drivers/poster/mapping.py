"""Poster wire objects <-> canonical receipts, events and answers (pure).

Identity and keys:
- register: ``<account>/<spotId>/<spotTabletId>``; receipt number: the order id (ms at open);
- a sale's key ``poster:<account>:<tablet>:order:<order id>`` (the app's resends, including one
  sent after the order synced and got its ``orderName``, carry the same key);
- a fiscal return's key adds the returned products, so one return resent is applied once while a
  second, different partial return of the same order is its own event;
- a ``transaction``/``removed`` webhook's key is ``poster:<account>:tx:<object_id>:removed``
  (Poster's redeliveries, with a fresh ``time`` and ``verify``, are applied once). It refunds
  the sale whose ``orderName`` equals the transaction id (the driver remembers that link);
- lines are merged per product + modification (``p<id>`` / ``p<id>m<modification>``), so a
  return's ``product_id``/``modification_id`` find their sale line.

The calc answer is one fixed amount (``setOrderBonus``): the sum of the core's line discounts,
never above the order total; "no loyalty" is ``bonus 0`` (it clears a stale amount).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime

from drivers.poster import NAME
from drivers.poster.wire import Loyalty, Order, PosEvent, Product, Webhook
from gateway.driver import CalcResult
from gateway.errors import BadInput
from gateway.fields import line_amount
from gateway.receipt import (
    MAX_AMOUNT,
    CustomerId,
    Event,
    EventKind,
    Line,
    Receipt,
    RefundLine,
    derived_key,
    sale_event,
)

TOKEN_KEY = "posgw"  # the order extra the app stores the calc token under (setExtras)


def register_of(ev: PosEvent) -> str:
    s = ev.settings
    return f"{s.account}/{s.spot_id or '0'}/{s.tablet_id or '0'}"


def sale_key(ev: PosEvent, order_id: str) -> str:
    return derived_key(NAME, ev.settings.account, ev.settings.tablet_id or "0", "order", order_id)


def tx_link(account: str, transaction_id: str) -> str:
    """The state key remembering which sale a back-office transaction id belongs to."""
    return f"tx:{account}:{transaction_id}"


def early_removal(account: str, transaction_id: str) -> str:
    """The state key of a removal webhook that arrived before its order closed (the webhook's
    body, kept until the order's sale names the transaction)."""
    return f"early:{account}:{transaction_id}"


def line_id(product_id: str, modification: str) -> str:
    if not modification:
        return f"p{product_id}"
    if modification.isdigit():
        return f"p{product_id}m{modification}"
    return f"p{product_id}m{hashlib.sha256(modification.encode()).hexdigest()[:12]}"


def customer_of(loyalty: Loyalty) -> CustomerId | None:
    return loyalty.identified()


def amount_of(p: Product) -> int:
    return line_amount(p.price, p.qty_milli)


def lines_of(products: tuple[Product, ...]) -> tuple[Line, ...]:
    merged: dict[str, Line] = {}
    for p in products:
        if p.qty_milli <= 0:
            continue
        lid = line_id(p.product_id, p.modification)
        amount = amount_of(p)
        seen = merged.get(lid)
        if seen is None:
            merged[lid] = Line(lid, p.product_id, f"product {p.product_id}", p.price, p.qty_milli, amount)
        else:
            merged[lid] = replace(seen, qty_milli=seen.qty_milli + p.qty_milli, amount=seen.amount + amount)
    for line in merged.values():
        if line.amount > MAX_AMOUNT:
            raise BadInput("amount too large", "data.order.products")
    return tuple(merged.values())


def _when(ms: int, now: datetime) -> datetime:
    if 10**11 < ms < 10**14:  # a plausible ms timestamp (1973..5138)
        return datetime.fromtimestamp(ms / 1000, UTC)
    return now


def order_receipt(ev: PosEvent, *, now: datetime, store_id: str = "", customer: CustomerId | None,
                  redeem_points: int = 0, redeem_max: bool = False) -> Receipt:
    order = ev.order
    if order is None:
        raise BadInput("is required", "data.order")
    lines = lines_of(order.products)
    if not lines:
        raise BadInput("the order has no products with a quantity", "data.order.products")
    return Receipt(
        register_id=register_of(ev), receipt_number=order.id, lines=lines,
        occurred_at=_when(order.date_close, now), document_id=order.id,
        store_id=store_id or ev.settings.account,
        customer=customer, redeem_points=redeem_points, redeem_max=redeem_max, driver=NAME,
    ).validate()


# ---------------------------------------------------------------- calc answer


def calc_receipt(ev: PosEvent, *, now: datetime, store_id: str = "") -> Receipt:
    return order_receipt(ev, now=now, store_id=store_id, customer=customer_of(ev.loyalty),
                         redeem_points=ev.loyalty.redeem, redeem_max=ev.loyalty.redeem_max)


def bonus_of(result: CalcResult, order: Order) -> int:
    return max(0, min(result.total_discount, order.total if order.total else result.total_discount))


def calc_extras(result: CalcResult) -> dict[str, str]:
    """What the app stores with ``setExtras(order.id, key, value)``; it comes back on afterOrderClose."""
    return {TOKEN_KEY: result.token} if result.token and result.customer_found else {}


def preview_receipt(ev: PosEvent, *, now: datetime, store_id: str = "") -> Receipt:
    """The open order priced for the guest popup: the guest, no redemption (what it would earn
    and the most it may spend)."""
    return order_receipt(ev, now=now, store_id=store_id, customer=customer_of(ev.loyalty))


# ---------------------------------------------------------------- commits


def token_of(order: Order) -> str:
    """The calc token the order's extras carry ("" when none)."""
    token = order.extras.get(TOKEN_KEY)
    return token if isinstance(token, str) else ""


def sale_of(ev: PosEvent, *, now: datetime, store_id: str = "") -> Event:
    """The sale of a closed order; its calc token (customer, points, hold) is applied by the pipeline."""
    assert ev.order is not None
    receipt = order_receipt(ev, now=now, store_id=store_id, customer=customer_of(ev.loyalty))
    return replace(sale_event(receipt, key=sale_key(ev, ev.order.id)), calc_token=token_of(ev.order))


def refund_of(ev: PosEvent, *, now: datetime) -> Event:
    assert ev.order is not None
    lines: dict[str, int] = {}
    for r in ev.returned:
        if r.qty_milli > 0:
            lid = line_id(r.product_id, r.modification)
            lines[lid] = lines.get(lid, 0) + r.qty_milli
    if not lines:
        raise BadInput("no returned product has a quantity", "data.products")
    what = ",".join(f"{k}x{v}" for k, v in sorted(lines.items()))
    digest = hashlib.sha256(what.encode()).hexdigest()[:16]
    key = derived_key(NAME, ev.settings.account, ev.settings.tablet_id or "0", "return", ev.order.id, digest)
    return Event(kind=EventKind.REFUND, key=key, register_id=register_of(ev), occurred_at=now,
                 sale_key=sale_key(ev, ev.order.id),
                 refund_lines=tuple(RefundLine(k, v) for k, v in sorted(lines.items())))


def webhook_event(hook: Webhook, linked_sale: str | None, *, now: datetime) -> Event | str:
    """The event a webhook stands for, or why it is acknowledged without storing anything."""
    if hook.object != "transaction":
        return f"{hook.object} webhooks carry no receipt"
    if hook.action != "removed":
        return f"transaction {hook.action}: the platform app reports the order itself"
    sale = linked_sale or derived_key(NAME, hook.account, "tx", hook.object_id)
    return Event(kind=EventKind.REFUND, key=derived_key(NAME, hook.account, "tx", hook.object_id, "removed"),
                 register_id=f"{hook.account}/webhook", occurred_at=now, sale_key=sale, refund_full=True,
                 extra=(("poster_account_number", hook.account_number),))
