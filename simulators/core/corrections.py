"""Corrections of a committed sale: AttachCustomer (proto ``AttachCustomerRequest``).

Two copies of one receipt can reach a gateway by two paths (Evotor's cloud webhook and its till
plugin); when the copy without the customer was delivered first, the gateway sends the customer
afterwards as a correction, applied once by its own key (``<sale key>:correction:<n>``).

Invariants:
- one DB transaction per correction, idempotent by ``correction_key`` (kind ``correction`` in
  ``operations``): same content replays the stored result, other content is RECEIPT_CONFLICT;
- only an anonymous sale, neither cancelled nor refunded, is corrected (else
  CORRECTION_NOT_ALLOWED; a sale that already has THIS customer is answered as a replay);
- the draft must be the sale's goods (line ids, quantities, amounts; else RECEIPT_CONFLICT) and
  redeem nothing: a correction adds accrual, it never spends points after the fact;
- the customer then gets exactly what the sale would have given with the customer on it
  (:func:`simulators.core.sales.apply_sale`: accrual at the tier held now, referral payouts,
  invite bonus, counters, tiers), and the sale row carries the customer from then on, so its
  later refunds and cancel claw the accrual back as usual;
- a sale the core has not seen yet is SALE_NOT_YET_KNOWN (retriable, deferred), as for refunds.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.rules.types import RuleViolation
from simulators.core import convert, sales
from simulators.core.context import Core
from simulators.core.refunds import sale_not_yet_known
from simulators.core.tables import Operation


def correction_content(req: pb.AttachCustomerRequest) -> dict[str, Any]:
    return {"sale": req.sale.sale_key, "draft": convert.draft_content(req.draft)}


def _goods(lines: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    return sorted(lines)


def _not_allowed(message: str, sale: Operation) -> RuleViolation:
    return RuleViolation("CORRECTION_NOT_ALLOWED", message, operation_id=str(sale.id))


def attach_customer(core: Core, req: pb.AttachCustomerRequest) -> pb.AttachCustomerResult:
    if not req.correction_key:
        raise convert.bad("correction_key", "correction_key is required")
    if req.sale.WhichOneof("ref") != "sale_key" or not req.sale.sale_key:
        raise convert.bad("sale.sale_key", "a correction names its sale by key")
    draft = req.draft
    convert.validate_draft(draft)
    if draft.customer.WhichOneof("id") is None:
        raise convert.bad("draft.customer", "a correction attaches a customer: name one")
    if draft.redeem_points or draft.redeem_max:
        raise convert.bad("draft.redeem_points", "a correction never redeems points after the fact")
    digest = convert.content_hash(correction_content(req))
    now = core.now()

    def work(s: Session) -> pb.AttachCustomerResult:
        known = s.query(Operation).filter_by(kind="correction", key=req.correction_key).one_or_none()
        if known is not None:
            if known.content_hash != digest:
                raise RuleViolation("RECEIPT_CONFLICT", "this correction_key was used for another correction")
            res = pb.AttachCustomerResult.FromString(known.result)
            res.replayed = True
            return res
        sale = sales.find_sale(s, req.sale.sale_key)
        if sale is None:
            raise sale_not_yet_known(req.sale.sale_key)
        state = json.loads(sale.state)
        if sale.cancelled:
            raise _not_allowed("the sale was cancelled", sale)
        if sale.refunded or state.get("refunds") or state.get("returned") or state.get("amount_refunded"):
            raise _not_allowed("the sale was (partly) refunded: attach the customer by hand", sale)
        sold = _goods([(ln["id"], ln["qty"], ln["amount"]) for ln in state["lines"]])
        if sold != _goods([(ln.line_id, ln.qty_milli, ln.amount) for ln in draft.lines]):
            raise RuleViolation("RECEIPT_CONFLICT", "the correction's goods differ from the sale's",
                                operation_id=str(sale.id))
        at = sale.occurred_at
        current = sale.customer_id
        person_id, commit, state_json = sales.apply_sale(s, core, sale.id, draft, at, now, current=current)
        if commit is None:  # the sale has a customer already: the same one is a replay
            if current != person_id:
                raise _not_allowed("the sale already has another customer", sale)
            return pb.AttachCustomerResult(operation_id=str(sale.id), customer_id=str(person_id),
                                           replayed=True)
        sale.customer_id = person_id
        sale.accrued = commit.calculation.points_to_accrue
        sale.state = state_json
        res = pb.AttachCustomerResult(
            operation_id=str(sale.id), customer_id=str(person_id),
            points_accrued=commit.calculation.points_to_accrue, payouts=commit.payouts,
            balance=commit.balance,
        )
        s.add(Operation(
            kind="correction", key=req.correction_key, content_hash=digest, customer_id=person_id,
            sale_id=sale.id, occurred_at=at, created_at=now, register_id=req.register_id,
            store_id=draft.staff.store_id, terminal_id=draft.staff.terminal_id,
            cashier_id=draft.staff.cashier_id, cashier_name=draft.staff.cashier_name,
            result=res.SerializeToString(),
        ))
        return res

    result: pb.AttachCustomerResult = core.db.transaction(work)
    return result
