"""Modul Kassa wire values <-> canonical receipts and events, and CalcResult -> impacts.

Pure. Invariants:
- loyalty is a *final unit price* per (possibly split) line, never an amount: a line whose
  discount does not divide evenly is split into at most two impacts, ``r`` units at
  ``u + 1`` kopecks and the rest at ``u``, so piece goods pay exactly the calculated amount;
  weight goods (and anything with modifiers) are never split, so they may drift by a kopeck;
- per position the impact quantities add up to the requested quantity exactly; impact ids
  are unique (``i1``, ``i2`` ...); no price is negative; ``data`` stays within 32000
  characters and ``printable_data`` is never blank (:func:`problems` checks all of it);
- committed lines are keyed by product identity (``c:<invent code>``, else ``b:<barcode>``,
  else ``n:<name>``), merged per product, so a return matches its sale line by line;
- the idempotency key of a closed check is ``modulkassa:check:<check_id>``;
- what the calc decided travels in the answer's ``data`` as the gateway's calc token (opaque
  here), which the plugin echoes in the check's loyalty data; the pipeline applies it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from drivers.modulkassa import NAME
from drivers.modulkassa.wire import (
    CANCELLED,
    CLOSED,
    MAX_BLOB,
    MAX_ID,
    Check,
    CheckEvent,
    Impact,
    Loyalty,
    LoyaltyAnswer,
    LoyaltyRequest,
    MkPosition,
)
from gateway.driver import CalcClaims, CalcResult
from gateway.fields import line_amount
from gateway.receipt import (
    CustomerId,
    Event,
    EventKind,
    Line,
    Payment,
    Receipt,
    RefundLine,
    derived_key,
    sale_event,
)
from gateway.slip import slip_text

TOKEN_PREFIX = "c1."  # how a calc token starts (older gateways answered a JSON blob: ignored)


def check_key(check_id: str) -> str:
    return derived_key(NAME, "check", check_id)


def customer_of(loyalty: Loyalty) -> CustomerId | None:
    return loyalty.identified()


def calc_receipt(req: LoyaltyRequest, *, now: datetime, store_id: str = "") -> Receipt:
    lines = tuple(
        Line(line_id=p.position_id, sku=p.invent_code or p.barcode, name=p.name, price=p.price,
             qty_milli=p.qty_milli, amount=line_amount(p.price, p.qty_milli))
        for p in req.positions
    )
    return Receipt(
        register_id=req.loyalty.device or req.retail_point_id or NAME, receipt_number="", lines=lines,
        occurred_at=now, document_id=req.request_id, cashier_id=req.user_id,
        store_id=store_id or req.retail_point_id, customer=customer_of(req.loyalty),
        redeem_points=req.loyalty.redeem_points, redeem_max=req.loyalty.redeem_max, driver=NAME,
    ).validate()


def split(position: MkPosition, paid: int) -> list[tuple[int, int]]:
    """(unit price, quantity) groups paying ``paid`` kopecks for the whole position."""
    qty = position.qty_milli
    if paid >= line_amount(position.price, qty):
        return [(position.price, qty)]
    if not position.piece:  # weight goods: one impact, may drift by a kopeck
        return [(max(0, (paid * 1000 + qty // 2) // qty), qty)]
    units = qty // 1000
    unit, extra = divmod(max(0, paid), units)
    groups = [(unit + 1, extra * 1000), (unit, (units - extra) * 1000)]
    return [(price, q) for price, q in groups if q > 0]


def identity_answer(req: LoyaltyRequest) -> LoyaltyAnswer:
    """Every position at its own price and full quantity: the sale goes on without loyalty."""
    return LoyaltyAnswer(impacts=tuple(
        Impact(f"i{n}", p.position_id, p.price, p.qty_milli, p.piece) for n, p in enumerate(req.positions, 1)
    ))


def answer(req: LoyaltyRequest, receipt: Receipt, result: CalcResult, *,
           print_balance: bool = True) -> LoyaltyAnswer:
    if result.customer is None or not result.customer_found:
        return identity_answer(req)
    discounts = {c.line_id: c.discount for c in result.lines}
    impacts: list[Impact] = []
    for pos in req.positions:
        paid = line_amount(pos.price, pos.qty_milli) - discounts.get(pos.position_id, 0)
        for price, qty in split(pos, paid):
            impacts.append(Impact(f"i{len(impacts) + 1}", pos.position_id, price, qty, pos.piece))
    data = result.token if len(result.token) <= MAX_BLOB else ""
    printable = slip_text(result.customer, result, print_balance=print_balance)
    out = LoyaltyAnswer(tuple(impacts), data, printable[:MAX_BLOB])
    return identity_answer(req) if problems(req, out) else out


def problems(req: LoyaltyRequest, ans: LoyaltyAnswer) -> list[str]:
    """Every way ``ans`` breaks the SDK's LoyaltyResult rules (empty when valid)."""
    out: list[str] = []
    by_id = {p.position_id: p for p in req.positions}
    ids = [i.impact_id for i in ans.impacts]
    if len(set(ids)) != len(ids):
        out.append("impact ids are not unique")
    qty: dict[str, int] = {}
    groups: dict[str, int] = {}
    for imp in ans.impacts:
        pos = by_id.get(imp.position_id)
        if not imp.impact_id.strip() or len(imp.impact_id) > MAX_ID:
            out.append(f"impact id {imp.impact_id!r} is blank or too long")
        if pos is None:
            out.append(f"impact {imp.impact_id} names an unknown position")
            continue
        if imp.price < 0 or imp.qty_milli <= 0:
            out.append(f"impact {imp.impact_id}: negative price or non-positive quantity")
        if pos.piece and imp.qty_milli % 1000:
            out.append(f"impact {imp.impact_id}: piece goods split into a fraction")
        qty[pos.position_id] = qty.get(pos.position_id, 0) + imp.qty_milli
        groups[pos.position_id] = groups.get(pos.position_id, 0) + 1
    for pos in req.positions:
        if qty.get(pos.position_id, 0) != pos.qty_milli:
            out.append(f"position {pos.position_id}: impact quantities do not add up")
        if not pos.piece and pos.has_modifiers and groups.get(pos.position_id, 0) > 1:
            out.append(f"position {pos.position_id}: weight goods with modifiers split")
    if len(ans.data) > MAX_BLOB or len(ans.printable) > MAX_BLOB:
        out.append("data or printable_data longer than 32000")
    return out


# ---------------------------------------------------------------- commits


def identity(line_code: str, barcode: str, name: str) -> str:
    return f"c:{line_code}" if line_code else f"b:{barcode}" if barcode else f"n:{name}"


def token_of(loyalty: Loyalty) -> str:
    """The calc token the plugin echoed in the check's loyalty data ("" when none)."""
    return loyalty.data if loyalty.data.startswith(TOKEN_PREFIX) else ""


def _lines(check: Check) -> tuple[Line, ...]:
    merged: dict[str, Line] = {}
    for ln in check.lines:
        if ln.qty_milli <= 0:
            continue
        key = identity(ln.invent_code, ln.barcode, ln.name)
        amount = line_amount(ln.price, ln.qty_milli)
        seen = merged.get(key)
        merged[key] = (Line(key, ln.invent_code or ln.barcode, ln.name, ln.price, ln.qty_milli, amount)
                       if seen is None else
                       replace(seen, qty_milli=seen.qty_milli + ln.qty_milli, amount=seen.amount + amount))
    return tuple(merged.values())


def event_of(ev: CheckEvent, claims: CalcClaims | None, *, now: datetime, store_id: str = "") -> Event | str:
    """The event for a broadcast, or the reason it is acknowledged and ignored. ``claims``: what
    the calc decided, read from the echoed calc token (None: no token)."""
    token = token_of(ev.loyalty)
    register = ev.loyalty.device or (ev.check.retail_point_id if ev.check else "") or NAME
    if ev.action == CANCELLED:
        if claims is None or not claims.hold_id:
            return "cancelled check held no points"
        return Event(kind=EventKind.CANCEL, key=derived_key(NAME, "cancel", ev.check_id),
                     register_id=register, occurred_at=now, calc_token=token)
    if ev.action != CLOSED or ev.check is None:
        return "broadcast carries no sale or return"
    check = ev.check
    if check.doc_type not in ("SALE", "RETURN"):
        return f"{check.doc_type} checks carry no loyalty"
    receipt = Receipt(
        register_id=register, receipt_number=check.number, lines=_lines(check),
        occurred_at=check.occurred_at or now, shift=check.shift, fiscal_sign=check.fiscal_sign,
        document_id=ev.check_id, cashier_id=check.employee_id, cashier_name=check.employee,
        store_id=store_id or check.retail_point_id, customer=customer_of(ev.loyalty),
        payments=tuple(Payment(k, a) for k, a in check.payments), driver=NAME,
    )
    if check.doc_type == "SALE":
        return replace(sale_event(receipt, key=check_key(ev.check_id)), calc_token=token)
    receipt.validate()
    sale = ev.loyalty.sale_check_id
    return Event(kind=EventKind.REFUND, key=check_key(ev.check_id), register_id=register,
                 occurred_at=receipt.occurred_at, receipt=receipt, sale_key=check_key(sale) if sale else "",
                 refund_lines=tuple(RefundLine(ln.line_id, ln.qty_milli) for ln in receipt.lines),
                 refund_amount=receipt.total, cashier_id=check.employee_id, cashier_name=check.employee)


def refuse_if_return(req: LoyaltyRequest) -> bool:
    """A return must not get a discount (it would change the refund): identity impacts."""
    return req.loyalty.doc_type in ("RETURN", "SALE_RETURN_CORRECTION")
