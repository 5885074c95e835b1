"""Conversions between the canonical model (:mod:`gateway.receipt`) and the core's protobufs.
(The outbox's JSON payload format of an event is :mod:`gateway.payload`.)

Pure functions, no I/O. Invariants:
- money and quantities pass through as the same integers (kopecks, thousandths);
- optional proto fields (``Line.discountable`` / ``accruable``) are set only when False, so
  "unset" keeps meaning "true" on the wire; ``min_unit_price`` only when known.
"""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.driver import CalcLine, CalcResult
from gateway.receipt import CustomerId, Event, EventKind, IdKind, Line, Receipt

# ---------------------------------------------------------------- canonical -> protobuf


def timestamp(dt: datetime) -> Timestamp:
    """An aware datetime -> protobuf Timestamp (UTC instant)."""
    ts = Timestamp()
    ts.FromDatetime(dt)
    return ts


def customer_ref(c: CustomerId) -> pb.CustomerRef:
    ref = pb.CustomerRef(otp=c.otp)
    # IdKind values are exactly the oneof field names of CustomerRef.
    setattr(ref, IdKind(c.kind).value, c.value)
    return ref


def line_to_pb(line: Line) -> pb.Line:
    out = pb.Line(
        line_id=line.line_id,
        sku=line.sku,
        category=line.category,
        name=line.name,
        qty_milli=line.qty_milli,
        price=line.price,
        amount=line.amount,
    )
    if line.min_unit_price is not None:
        out.min_unit_price = line.min_unit_price
    if not line.discountable:
        out.discountable = False
    if not line.accruable:
        out.accruable = False
    return out


def _staff(store_id: str, register_id: str, cashier_id: str, cashier_name: str) -> pb.Staff:
    return pb.Staff(
        store_id=store_id, terminal_id=register_id, cashier_id=cashier_id, cashier_name=cashier_name
    )


def receipt_to_draft(r: Receipt) -> pb.ReceiptDraft:
    draft = pb.ReceiptDraft(
        lines=[line_to_pb(line) for line in r.lines],
        redeem_points=r.redeem_points,
        redeem_max=r.redeem_max,
        occurred_at=timestamp(r.occurred_at),
        staff=_staff(r.store_id, r.register_id, r.cashier_id, r.cashier_name),
        register_id=r.register_id,
        receipt_number=r.receipt_number,
        total=r.total,
        channel=r.driver,
    )
    if r.customer is not None:
        draft.customer.CopyFrom(customer_ref(r.customer))
    return draft


def _event_staff(e: Event) -> pb.Staff:
    store = e.receipt.store_id if e.receipt is not None else ""
    cashier_id = e.cashier_id or (e.receipt.cashier_id if e.receipt is not None else "")
    cashier_name = e.cashier_name or (e.receipt.cashier_name if e.receipt is not None else "")
    return _staff(store, e.register_id, cashier_id, cashier_name)


def event_to_envelope(e: Event, register_seq: int) -> pb.EventEnvelope:
    """The StreamEvents envelope of an outbox event (commit, refund or cancel)."""
    env = pb.EventEnvelope(event_id=e.key, register_id=e.register_id, register_seq=register_seq)
    if e.kind == EventKind.SALE:
        if e.receipt is None:
            raise ValueError(f"sale event {e.key!r} carries no receipt")
        commit = pb.CommitRequest(
            idempotency_key=e.key, draft=receipt_to_draft(e.receipt), hold_id=e.hold_id, offline=e.offline
        )
        if e.expected_redeemed is not None:
            commit.expected.CopyFrom(pb.Expected(redeemed_points=e.expected_redeemed))
        env.commit.CopyFrom(commit)
    elif e.kind == EventKind.REFUND:
        env.refund.CopyFrom(
            pb.RefundRequest(
                refund_key=e.key,
                sale=pb.SaleRef(sale_key=e.sale_key),
                full=e.refund_full,
                lines=[pb.RefundLine(line_id=rl.line_id, qty_milli=rl.qty_milli) for rl in e.refund_lines],
                amount=e.refund_amount,
                occurred_at=timestamp(e.occurred_at),
                staff=_event_staff(e),
                register_id=e.register_id,
            )
        )
    elif e.kind == EventKind.CANCEL:
        cancel = pb.CancelRequest(
            cancel_key=e.key,
            occurred_at=timestamp(e.occurred_at),
            staff=_event_staff(e),
            register_id=e.register_id,
        )
        if e.sale_key:
            cancel.sale.CopyFrom(pb.SaleRef(sale_key=e.sale_key))
        else:  # no sale: release the hold taken at calculate time
            cancel.hold_id = e.hold_id
        env.cancel.CopyFrom(cancel)
    elif e.kind == EventKind.CORRECTION:
        if e.receipt is None or e.receipt.customer is None:
            raise ValueError(f"correction event {e.key!r} carries no receipt with a customer")
        draft = receipt_to_draft(e.receipt)
        draft.redeem_points, draft.redeem_max = 0, False  # a correction never spends points
        env.attach_customer.CopyFrom(pb.AttachCustomerRequest(
            correction_key=e.key, sale=pb.SaleRef(sale_key=e.sale_key), draft=draft,
            occurred_at=timestamp(e.occurred_at), register_id=e.register_id,
        ))
    else:  # pragma: no cover - EventKind is closed
        raise ValueError(f"unknown event kind {e.kind!r}")
    return env


# ---------------------------------------------------------------- protobuf -> canonical


def calculation_to_result(c: pb.Calculation, *, offline: bool) -> CalcResult:
    """The core's Calculation -> what a driver answers its till with.

    ``balance`` is the customer's balance before this receipt, or None when the answer is
    offline (the slip then says "pending" instead of printing a stale figure).
    """
    is_offline = offline or c.offline
    return CalcResult(
        lines=tuple(
            CalcLine(line_id=x.line_id, discount=x.discount, paid=x.paid, accrues=x.accrues) for x in c.lines
        ),
        redeemed_points=c.redeemed_certificate + c.redeemed_ordinary,
        points_to_accrue=c.points_to_accrue,
        max_points=c.max_points,
        payable=c.payable,
        offline=is_offline,
        customer_found=bool(c.customer_id),
        customer_id=c.customer_id,
        display_name=c.display_name,
        tier=c.tier,
        balance=None if is_offline or not c.customer_id else c.balance_before,
        hold_id=c.hold_id,
        limited_by=c.limited_by,
        message="; ".join(rule.reason for rule in c.applied_rules if rule.reason),
    )
