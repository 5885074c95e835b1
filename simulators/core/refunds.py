"""Refund and Cancel of a committed sale (loyalty-rules.md §2.3).

Invariants:
- one DB transaction per refund / cancel, idempotent by ``refund_key`` / ``cancel_key``
  (same content replays the stored result, other content is RECEIPT_CONFLICT);
- refund figures are cumulative (``gateway.rules.refund``), so the last refund closes the
  sale exactly; the sale's ``state`` JSON keeps what was returned, restored and clawed;
- within each account restored points are credited before clawbacks are debited; what a
  clawback cannot take becomes debt (reported as ``shortfall``);
- a refund or cancel naming a sale by a key the core has not seen yet is SALE_NOT_YET_KNOWN
  (retriable and deferred: see :mod:`simulators.core.service`), never OPERATION_NOT_FOUND: the
  sale may still be on its way; an unknown operation id stays OPERATION_NOT_FOUND;
- a cancel is an exact reversal: redeemed points go back to their original lots, payout
  lots are removed (the debt rule applies to what was already spent), counters roll back.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.rules import refund as rref
from gateway.rules.types import RuleViolation
from simulators.core import convert, store
from simulators.core.context import Core
from simulators.core.db import lock_customers
from simulators.core.sales import find_sale
from simulators.core.tables import Customer, Hold, LotRow, Operation

RESTORE_MIN_DAYS = 30
CANCEL_WINDOW = timedelta(hours=24)


def _sale(s: Session, ref: pb.SaleRef) -> Operation:
    kind = ref.WhichOneof("ref")
    op: Operation | None = None
    if kind == "operation_id":
        try:
            op = s.get(Operation, int(ref.operation_id))
        except (ValueError, OverflowError):
            op = None
        if op is not None and op.kind != "sale":
            op = None
    elif kind == "sale_key":
        op = find_sale(s, ref.sale_key)
        if op is None:  # a refund may overtake its sale (another path, a resend): it waits
            raise sale_not_yet_known(ref.sale_key)
    if op is None:
        raise RuleViolation("OPERATION_NOT_FOUND", "no committed sale matches this reference")
    return op


def sale_not_yet_known(sale_key: str) -> RuleViolation:
    """The retriable, deferred rejection of an operation whose sale (by key) is not here yet:
    the gateway sets the event aside and resends it, the register's other events go on."""
    return RuleViolation("SALE_NOT_YET_KNOWN", f"sale {sale_key} is not known (yet)", sale_key=sale_key)


def _keyed(s: Session, kind: str, key: str) -> Operation | None:
    return s.scalar(select(Operation).where(Operation.kind == kind, Operation.key == key))


def _refundable(sale: Operation) -> None:
    """Raises OPERATION_CANCELLED when ``sale`` was cancelled."""
    if sale.cancelled:
        raise RuleViolation(
            "OPERATION_CANCELLED", "the sale was cancelled; nothing to refund", operation_id=str(sale.id)
        )


def _operation(
    kind: str,
    key: str,
    digest: str,
    req: pb.RefundRequest | pb.CancelRequest,
    customer_id: int | None,
    sale_id: int | None,
    at: datetime,
    now: datetime,
    **extra: Any,
) -> Operation:
    """The row of a refund or cancel: who did it (staff, register) comes from the request."""
    return Operation(
        kind=kind,
        key=key,
        content_hash=digest,
        customer_id=customer_id,
        sale_id=sale_id,
        occurred_at=at,
        created_at=now,
        store_id=req.staff.store_id,
        terminal_id=req.staff.terminal_id,
        register_id=req.register_id,
        cashier_id=req.staff.cashier_id,
        cashier_name=req.staff.cashier_name,
        **extra,
    )


def _lock_sale(s: Session, core: Core, sale: Operation, state: dict[str, Any]) -> dict[int, Customer]:
    ids = [p["cust"] for p in state["payouts"]]
    if sale.customer_id is not None:
        ids.append(sale.customer_id)
    if state.get("inviter") is not None:
        ids.append(state["inviter"])  # may lose an effective invitee (_drop_purchase)
    return lock_customers(s, ids, core.db.postgres)


def _sold(state: dict[str, Any]) -> list[rref.SoldLine]:
    return [
        rref.SoldLine(
            line_id=ln["id"],
            qty_milli=ln["qty"],
            amount=ln["amount"],
            discount=ln["discount"],
            accruable=ln["accruable"],
            instant=ln.get("instant", 0),
        )
        for ln in state["lines"]
    ]


def _math(req: pb.RefundRequest, state: dict[str, Any], pv: int) -> tuple[rref.RefundMath, dict[str, int]]:
    sold = _sold(state)
    returned: dict[str, int] = dict(state["returned"])
    amount_mode = state["amount_refunded"] > 0 or (req.amount > 0 and not req.lines and not req.full)
    if amount_mode:
        if req.lines:
            raise convert.bad("lines", "this sale was refunded by amount: refund by amount again")
        total_paid = sum(ln.paid for ln in sold)
        now_amount = total_paid - state["amount_refunded"] if req.full else req.amount
        if now_amount < 0:
            raise convert.bad("amount", "amount must be >= 0")
        if req.full and now_amount == 0:
            raise RuleViolation("REFUND_EXCEEDS_SALE", "everything paid was already refunded")
        m = rref.amount_refund_totals(sold, state["amount_refunded"], now_amount, pv)
        return m, returned
    if returned and not req.lines and not req.full:
        raise convert.bad("lines", "say full, lines or amount")
    if req.full:
        now_qty = {ln.line_id: ln.qty_milli - returned.get(ln.line_id, 0) for ln in sold}
        if not any(now_qty.values()):
            raise RuleViolation("REFUND_EXCEEDS_SALE", "everything sold was already returned")
    else:
        if not req.lines:
            raise convert.bad("lines", "say full, lines or amount")
        known = {ln.line_id for ln in sold}
        now_qty = {}
        for i, rl in enumerate(req.lines):
            if rl.line_id not in known:
                raise convert.bad(f"lines[{i}].line_id", f"the sale has no line {rl.line_id!r}")
            if rl.qty_milli <= 0:
                raise convert.bad(f"lines[{i}].qty_milli", "quantity must be > 0")
            now_qty[rl.line_id] = now_qty.get(rl.line_id, 0) + rl.qty_milli
    m = rref.refund_totals(sold, returned, now_qty, pv)
    for lid, q in now_qty.items():
        returned[lid] = returned.get(lid, 0) + q
    return m, returned


def _restore(
    s: Session,
    custs: dict[int, Customer],
    sale: Operation,
    state: dict[str, Any],
    points: int,
    at: datetime,
) -> int:
    """Give back ``points`` in reverse spending order; -> points actually restored."""
    cust = custs[sale.customer_id] if sale.customer_id is not None else None
    if cust is None or points <= 0:
        return 0
    per = state.setdefault("debit_restored", [0] * len(state["debits"]))
    left, given = points, 0
    for idx in reversed(range(len(state["debits"]))):
        d = state["debits"][idx]
        take = min(left, d["points"] - per[idx])
        if take <= 0:
            continue
        per[idx] += take
        left -= take
        if d["cert"]:
            lot = s.get(LotRow, d["lot"])
            if lot is not None and (lot.expires_at is None or lot.expires_at > at):
                lot.remaining += take
                store.record(s, cust.id, "restore", take, at, op_id=sale.id, lot_id=lot.id)
                given += take
        else:
            orig = datetime.fromisoformat(d["expires"]) if d["expires"] else None
            floor = at + timedelta(days=RESTORE_MIN_DAYS)
            store.credit(
                s,
                cust,
                take,
                "restore",
                at=at,
                expires_at=None if orig is None else max(orig, floor),
                op_id=sale.id,
            )
            given += take
        if left == 0:
            break
    return given


def refund(core: Core, req: pb.RefundRequest) -> pb.RefundResponse:
    if not req.refund_key:
        raise convert.bad("refund_key", "refund_key is required")
    digest = convert.content_hash(convert.refund_content(req))
    now = core.now()
    at = convert.when(req.occurred_at, req.HasField("occurred_at"), now)
    program = core.program

    def work(s: Session) -> pb.RefundResponse:
        known = _keyed(s, "refund", req.refund_key)
        if known is not None:
            if known.content_hash != digest:
                raise RuleViolation("RECEIPT_CONFLICT", "this refund_key was used for another refund")
            res = pb.RefundResponse.FromString(known.result)
            res.replayed = True
            return res
        sale = _sale(s, req.sale)
        _refundable(sale)
        custs = _lock_sale(s, core, sale, json.loads(sale.state))
        s.refresh(sale)
        _refundable(sale)
        state = json.loads(sale.state)
        m, returned = _math(req, state, program.pv)
        op = _operation(
            "refund", req.refund_key, digest, req, sale.customer_id, sale.id, at, now, paid=m.money_now
        )
        s.add(op)
        s.flush()
        restored = _restore(s, custs, sale, state, m.restored_points_now, at)
        clawbacks: list[pb.Clawback] = []
        clawed: dict[str, int] = state["clawed"]
        for p in state["payouts"]:
            key = f"{p['cust']}:{p['kind']}:{p['level']}"
            before = clawed.get(key, 0)
            if p["kind"] == "invite_bonus":
                due = p["points"] - before if m.full else 0
            else:
                due = rref.clawback_now(p["points"], m.cumulative_b, state["accrual_base"], before)
            if due <= 0:
                continue
            who = custs[p["cust"]]
            first = s.get(LotRow, p["lot"]) if p["lot"] else None
            short = store.debit(
                s,
                who,
                due,
                f"clawback_{p['kind']}",
                at=at,
                op_id=op.id,
                first=first,
                cashier_id=req.staff.cashier_id,
            )
            clawed[key] = before + due
            who.updated_at = now
            clawbacks.append(
                pb.Clawback(
                    customer_id=str(who.id), kind=p["kind"], level=p["level"], points=due, shortfall=short
                )
            )
        state.update(
            returned=returned,
            money_refunded=state["money_refunded"] + m.money_now,
            refunds=state["refunds"] + 1,
            restored=state["restored"] + m.restored_points_now,
        )
        if state["amount_refunded"] > 0 or (req.amount > 0 and not req.lines and not req.full):
            state["amount_refunded"] += m.money_now
        buyer = custs.get(sale.customer_id) if sale.customer_id is not None else None
        if buyer is not None:
            buyer.total_spent = max(0, buyer.total_spent - m.money_now)
            if m.full and not state.get("closed"):
                state["closed"] = True
                _drop_purchase(s, custs, buyer)
            buyer.updated_at = now
        sale.state = json.dumps(state)
        sale.refunded = True
        for c in custs.values():
            store.retier(program, c)
        dd_now = m.cumulative_dd - state.get("dd", 0)
        state["dd"] = m.cumulative_dd
        sale.state = json.dumps(state)
        op.gross, op.discount = m.money_now + dd_now, dd_now
        op.redeemed = -restored
        op.accrued = -sum(cb.points for cb in clawbacks)
        op.state = json.dumps({"restored": restored, "money": m.money_now, "full": m.full})
        bal = store.balance(s, program, buyer, at, now) if buyer is not None else None
        result = pb.RefundResponse(
            refund_id=str(op.id),
            operation_id=str(sale.id),
            money_refunded=m.money_now,
            points_restored=restored,
            clawbacks=clawbacks,
            balance=0 if bal is None else bal.total,
            debt=0 if bal is None else bal.shown_debt,
        )
        op.result = result.SerializeToString()
        return result

    return core.db.transaction(work)


def _release_hold(core: Core, req: pb.CancelRequest) -> pb.CancelResponse:
    """Release a hold (a receipt calculated, then abandoned before closing).

    With a ``cancel_key`` the release is recorded as a ``cancel`` operation without a sale,
    so a resent release replays and the delivery check sees every acknowledged key once.
    """
    now = core.now()
    at = convert.when(req.occurred_at, req.HasField("occurred_at"), now)
    digest = convert.content_hash({"hold": req.hold_id})

    def work(s: Session) -> pb.CancelResponse:
        if req.cancel_key:
            known = _keyed(s, "cancel", req.cancel_key)
            if known is not None:
                if known.content_hash != digest:
                    raise RuleViolation("RECEIPT_CONFLICT", "this cancel_key was used for something else")
                res = pb.CancelResponse.FromString(known.result)
                res.replayed = True
                return res
        hold = s.get(Hold, req.hold_id)
        if hold is None:
            raise RuleViolation("OPERATION_NOT_FOUND", "no such hold")
        cust = s.get(Customer, hold.customer_id)
        replayed = hold.state != "live"
        if hold.state == "live":
            hold.state = "released"
        bal = store.balance(s, core.program, cust, now, now) if cust is not None else None
        result = pb.CancelResponse(
            balance=0 if bal is None else bal.total,
            debt=0 if bal is None else bal.shown_debt,
            replayed=replayed,
        )
        if req.cancel_key:
            s.add(_operation("cancel", req.cancel_key, digest, req, hold.customer_id, None, at, now,
                             result=result.SerializeToString()))
        return result

    return core.db.transaction(work)


def cancel(core: Core, req: pb.CancelRequest) -> pb.CancelResponse:
    if req.hold_id and req.sale.WhichOneof("ref") is None:
        return _release_hold(core, req)
    if not req.cancel_key:
        raise convert.bad("cancel_key", "cancel_key is required")
    digest = convert.content_hash(convert.cancel_content(req))
    now = core.now()
    at = convert.when(req.occurred_at, req.HasField("occurred_at"), now)
    program = core.program

    def work(s: Session) -> pb.CancelResponse:
        known = _keyed(s, "cancel", req.cancel_key)
        if known is not None and known.content_hash != digest:
            raise RuleViolation("RECEIPT_CONFLICT", "this cancel_key was used for another sale")
        sale = _sale(s, req.sale)
        if known is None and sale.cancelled:
            known = s.scalar(
                select(Operation).where(Operation.kind == "cancel", Operation.sale_id == sale.id)
            )
        if known is not None:
            res = pb.CancelResponse.FromString(known.result)
            res.replayed = True
            return res
        custs = _lock_sale(s, core, sale, json.loads(sale.state))
        s.refresh(sale)
        if sale.cancelled:
            raise RuleViolation("UNAVAILABLE", "cancelled concurrently; resend")
        if sale.refunded:
            raise RuleViolation("CANCEL_NOT_ALLOWED", "the sale has refunds: refund the rest instead")
        if at - sale.occurred_at > CANCEL_WINDOW:
            raise RuleViolation("CANCEL_NOT_ALLOWED", "more than 24 h since the sale: refund it instead")
        state = json.loads(sale.state)
        op = _operation("cancel", req.cancel_key, digest, req, sale.customer_id, sale.id, at, now)
        s.add(op)
        s.flush()
        buyer = custs.get(sale.customer_id) if sale.customer_id is not None else None
        restored = removed = 0
        if buyer is not None:
            for d in state["debits"]:
                lot = s.get(LotRow, d["lot"])
                repay = min(d["points"], buyer.debt)
                buyer.debt -= repay
                if lot is not None:
                    lot.remaining += d["points"] - repay
                restored += d["points"]
            if restored:
                store.record(s, buyer.id, "cancel_restore", restored, at, op_id=op.id)
        for p in state["payouts"]:
            if p["points"] <= 0:
                continue
            who = custs[p["cust"]]
            first = s.get(LotRow, p["lot"]) if p["lot"] else None
            store.debit(s, who, p["points"], f"cancel_{p['kind']}", at=at, op_id=op.id, first=first)
            who.updated_at = now
            if who is buyer:
                removed += p["points"]
        if buyer is not None:
            buyer.total_spent = max(0, buyer.total_spent - sale.paid)
            _drop_purchase(s, custs, buyer)
            _recount_dates(s, buyer, sale.id)
            buyer.updated_at = now
        sale.cancelled = True
        for c in custs.values():
            store.retier(program, c)
        bal = store.balance(s, program, buyer, at, now) if buyer is not None else None
        result = pb.CancelResponse(
            operation_id=str(sale.id),
            balance=0 if bal is None else bal.total,
            debt=0 if bal is None else bal.shown_debt,
            points_restored=restored,
            points_removed=removed,
        )
        op.result = result.SerializeToString()
        return result

    return core.db.transaction(work)


def _drop_purchase(s: Session, custs: dict[int, Customer], buyer: Customer) -> None:
    """A cancel or full refund takes one purchase off ``buyer`` (§2.3).

    When that was the buyer's last purchase, the inviter loses the effective invitee the
    buyer's first purchase gave them (§1); the next purchase is a first purchase again and
    counts anew, so the counter is exactly "invitees with a purchase left".
    """
    had = buyer.purchase_count
    buyer.purchase_count = max(0, had - 1)
    if had == 1 and buyer.inviter_id is not None:
        inv = custs.get(buyer.inviter_id) or s.get(Customer, buyer.inviter_id)
        if inv is not None:
            inv.effective_invited = max(0, inv.effective_invited - 1)
            custs.setdefault(inv.id, inv)  # re-tiered with the others


def _recount_dates(s: Session, cust: Customer, cancelled_id: int) -> None:
    q = select(func.min(Operation.occurred_at), func.max(Operation.occurred_at)).where(
        Operation.kind == "sale",
        Operation.customer_id == cust.id,
        Operation.cancelled.is_(False),
        Operation.id != cancelled_id,
    )
    first, last = s.execute(q).one()
    cust.first_purchase_at, cust.last_purchase_at = first, last
