"""Evotor wire values <-> canonical receipts and events, and CalcResult -> the SDK's answer.

Pure. Invariants:
- calc lines are keyed by the position uuid (the answer's map is keyed by it); committed
  lines are keyed by the product identity (``p:<productUuid>``, else ``c:<code>``, else
  ``n:<name>``), merged per product, so a payback matches its sale line by line even
  though the terminal gives payback positions new uuids, and the cloud and the plugin
  produce the same lines;
- the idempotency key of a receipt is ``evotor:doc:<receipt uuid>``: the plugin's
  ``receiptUuid``, the cloud ``data.id`` and the document ``uuid`` are the same value, so
  every path and every resend of one receipt dedupes to one event;
- the answer's ``discount`` replaces the receipt discount, so it is the discount already on
  the receipt plus ours, and the per-position map adds up to it exactly, in kopecks;
- what the calc decided travels with the receipt in its ``extra`` as the gateway's calc token
  (key ``posgw``, opaque here) and comes back on the close and in the cloud's copy; the driver
  reads it through ``ctx.calc_claims`` (our discount, the hold) and the pipeline applies it to
  the event (customer, points, hold, offline).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from drivers.evotor import NAME
from drivers.evotor.cloud_wire import CloudDoc
from drivers.evotor.wire import DiscountAnswer, DocType, Kind, Loyalty, PluginMessage, Position, Snapshot
from gateway.driver import CalcClaims, CalcResult
from gateway.errors import BadInput
from gateway.fields import line_amount
from gateway.receipt import (
    CustomerId,
    Event,
    EventKind,
    IdKind,
    Line,
    Payment,
    Receipt,
    RefundLine,
    derived_key,
    sale_event,
)
from gateway.slip import slip_text

TOKEN_KEY = "posgw"  # the key of the calc token in the receipt's extra
FREE_PRICE_PRODUCT = "390067bf-e8d3-4fcc-8c30-fbfd77a0a70d"  # Evotor's reserved uuid of free-price items


def doc_key(receipt_uuid: str) -> str:
    return derived_key(NAME, "doc", receipt_uuid)


def spread(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` kopecks over ``weights`` by largest remainder; sums to ``total`` exactly."""
    base = sum(weights)
    if not weights:
        return []
    if base <= 0:
        out = [0] * len(weights)
        out[0] = total
        return out
    shares = [total * w // base for w in weights]
    order = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % base), i))
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


def identity(product_uuid: str, code: str, name: str) -> str:
    if product_uuid and product_uuid != FREE_PRICE_PRODUCT:
        return f"p:{product_uuid}"
    if code:
        return f"c:{code}"
    return f"n:{name}"


def customer_of(loyalty: Loyalty) -> CustomerId | None:
    return loyalty.identified((IdKind.APP_CODE, loyalty.app_code, "loyalty.appCode"),
                              (IdKind.QR, loyalty.qr, "loyalty.qr"))


def _existing_shares(msg: PluginMessage, snap: Snapshot, gross: list[int]) -> list[int]:
    """Each position's share of the receipt discount already applied (manual, other apps)."""
    shares = [snap.discounts.get(p.uuid, 0) for p in snap.positions]
    if sum(shares) == msg.event_discount or (msg.event_discount == 0 and not any(shares)):
        return shares
    return spread(msg.event_discount, gross)


def _register(msg: PluginMessage) -> str:
    return msg.device.device_uuid or msg.device.store_uuid or NAME


def calc_receipt(msg: PluginMessage, *, now: datetime, store_id: str = "") -> Receipt:
    snap = msg.snapshot
    if snap is None:
        raise BadInput("the receipt snapshot is required", "receipt")
    gross = [line_amount(p.price_with_discount, p.qty_milli) for p in snap.positions]
    shares = _existing_shares(msg, snap, gross)
    lines = []
    for i, (pos, amount, share) in enumerate(zip(snap.positions, gross, shares, strict=True)):
        if share > amount:
            raise BadInput("the receipt discount exceeds the position", f"receipt.positions[{i}]")
        lines.append(Line(line_id=pos.uuid, sku=pos.product_code or pos.product_uuid, name=pos.name,
                          price=pos.price_with_discount, qty_milli=pos.qty_milli, amount=amount - share))
    return Receipt(
        register_id=_register(msg), receipt_number=snap.number, lines=tuple(lines),
        occurred_at=snap.date or now, shift=snap.session, document_id=msg.receipt_uuid,
        cashier_id=msg.device.user_id, store_id=store_id or msg.device.store_uuid,
        customer=customer_of(msg.loyalty), redeem_points=msg.loyalty.redeem_points,
        redeem_max=msg.loyalty.redeem_max, driver=NAME,
    ).validate()


def discount_answer(msg: PluginMessage, receipt: Receipt, result: CalcResult, *,
                    print_balance: bool = True) -> DiscountAnswer | None:
    """The SDK result for a calc; None means ``skip`` (the terminal goes on unchanged)."""
    if result.customer is None or not result.customer_found:
        return None
    snap = msg.snapshot
    assert snap is not None  # calc_receipt refused a calc without one
    gross = [line_amount(p.price_with_discount, p.qty_milli) for p in snap.positions]
    existing = _existing_shares(msg, snap, gross)
    ours = {c.line_id: c.discount for c in result.lines}
    per_position = tuple(
        (p.uuid, share + ours.get(p.uuid, 0)) for p, share in zip(snap.positions, existing, strict=True)
    )
    return DiscountAnswer(
        discount=sum(d for _, d in per_position), position_discounts=per_position,
        extra={TOKEN_KEY: result.token} if result.token else {},
        print_text=slip_text(result.customer, result, print_balance=print_balance),
    )


# ---------------------------------------------------------------- commits


def token_of(extra: dict[str, object]) -> str:
    """The calc token the receipt carries in its extra ("" when none)."""
    token = extra.get(TOKEN_KEY)
    return token if isinstance(token, str) else ""


def _merged(items: Sequence[tuple[str, str, str, int, int, int]]) -> tuple[Line, ...]:
    """(line id, sku, name, unit price, qty, amount) per position -> one line per product."""
    merged: dict[str, Line] = {}
    for line_id, sku, name, price, qty, amount in items:
        if qty <= 0:
            continue
        seen = merged.get(line_id)
        merged[line_id] = (Line(line_id, sku, name, price, qty, amount) if seen is None else
                           replace(seen, qty_milli=seen.qty_milli + qty, amount=seen.amount + amount))
    return tuple(merged.values())


def _receipt(*, register: str, number: str, session: str, when: datetime, uuid: str, store: str,
             lines: tuple[Line, ...], customer: CustomerId | None, cashier: str = "",
             payments: tuple[Payment, ...] = ()) -> Receipt:
    return Receipt(register_id=register, receipt_number=number, lines=lines, occurred_at=when, shift=session,
                   document_id=uuid, cashier_id=cashier, store_id=store, customer=customer,
                   payments=payments, driver=NAME)


def _event(kind: str, receipt: Receipt, base_uuid: str, token: str) -> Event:
    """A sale or a per-line refund of the sale ``base_uuid``."""
    key = doc_key(receipt.document_id)
    if kind == "sale":
        return replace(sale_event(receipt, key=key), calc_token=token)
    receipt.validate()
    return Event(kind=EventKind.REFUND, key=key, register_id=receipt.register_id,
                 occurred_at=receipt.occurred_at, receipt=receipt,
                 sale_key=doc_key(base_uuid) if base_uuid else "",
                 refund_lines=tuple(RefundLine(ln.line_id, ln.qty_milli) for ln in receipt.lines),
                 refund_amount=receipt.total, cashier_id=receipt.cashier_id)


def plugin_event(msg: PluginMessage, claims: CalcClaims | None, *, now: datetime,
                 store_id: str = "") -> Event | str:
    """The event for a close or clear broadcast, or the reason it is acknowledged and ignored.
    ``claims``: what the calc decided, read from the receipt's calc token (None: no token)."""
    snap = msg.snapshot
    token = token_of(snap.extra) if snap else ""
    if msg.kind is Kind.CLEAR:
        if claims is None or not claims.hold_id:
            return "cleared receipt held no points"
        return Event(kind=EventKind.CANCEL, key=derived_key(NAME, "cancel", msg.receipt_uuid),
                     register_id=_register(msg), occurred_at=now, cashier_id=msg.device.user_id,
                     calc_token=token)
    assert snap is not None and msg.kind is Kind.CLOSE
    kind = {DocType.SELL: "sale", DocType.PAYBACK: "refund"}.get(msg.doc_type)
    if kind is None:
        return f"{msg.doc_type.value} receipts carry no loyalty"
    lines = _commit_lines(snap, 0 if claims is None else claims.discount)
    receipt = _receipt(register=_register(msg), number=snap.number, session=snap.session,
                       when=snap.date or now, uuid=msg.receipt_uuid, store=store_id or msg.device.store_uuid,
                       lines=lines, customer=customer_of(msg.loyalty), cashier=msg.device.user_id,
                       payments=tuple(Payment(t.kind, t.amount) for t in snap.payments))
    return _event(kind, receipt, snap.base_uuid, token)


def _commit_lines(snap: Snapshot, ours: int) -> tuple[Line, ...]:
    """Amounts before our discount (``ours``, from the calc token): the position sums less any
    receipt discount that was not ours."""
    gross = [line_amount(p.price_with_discount, p.qty_milli) for p in snap.positions]
    others_total = max(0, sum(snap.discounts.values()) - max(0, ours))
    others = spread(min(others_total, sum(gross)), gross)
    items = [(_pos_id(p), p.product_code or p.product_uuid, p.name, p.price_with_discount, p.qty_milli,
              max(0, g - o)) for p, g, o in zip(snap.positions, gross, others, strict=True)]
    return _merged(items)


def _pos_id(p: Position) -> str:
    return identity(p.product_uuid, p.product_code, p.name)


def cloud_event(doc: CloudDoc, *, now: datetime, store_id: str = "") -> Event | str:
    """A cloud receipt or document -> the same event the plugin's close would give (the calc
    token, when the receipt's extras carry it, is applied by the pipeline)."""
    if doc.receipt_kind is None:
        return doc.ignored_reason
    lines = _merged([(identity(it.item_id, it.code, it.name), it.code or it.item_id, it.name, it.price,
                      it.qty_milli, it.amount) for it in doc.items])
    receipt = _receipt(register=doc.device_id or doc.store_id or NAME, number=doc.number, session=doc.session,
                       when=doc.occurred_at or now, uuid=doc.doc_id, store=store_id or doc.store_id,
                       lines=lines, customer=None)
    return _event(doc.receipt_kind, receipt, doc.base_doc_id, token_of(doc.extras))
