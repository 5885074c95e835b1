"""Calculate (with holds) and Commit of the reference core (loyalty-rules.md §2.1, §2.2).

Invariants:
- a Commit is one DB transaction: the key check, recalculation, debits in spending order,
  accrual, referral payouts, invite bonus, counters, tiers and the stored result all commit
  together or not at all;
- a known key with the same content hash replays the stored result (``replayed = true``),
  with another hash it is RECEIPT_CONFLICT, and nothing changes either way;
- the buyer and their ancestors are locked (PostgreSQL ``FOR UPDATE``, id order; SQLite
  ``BEGIN IMMEDIATE``) before the account is read, so concurrent commits never overspend;
- points held by other tills' live holds are not spendable here;
- a draft whose customer is a contact only (``CustomerRef.if_known``) and matches nobody is
  committed as an anonymous sale (``customer_unknown``), never refused for it; the stored
  sale keeps the draft, so a correction (AttachCustomer) can give it to the customer later.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.rules import calc as rcalc
from gateway.rules.dates import available_from, expiry_for
from gateway.rules.identity import mask_name
from gateway.rules.program import Program
from gateway.rules.referral import referral_payouts
from gateway.rules.tiers import tier_for
from gateway.rules.types import AccountState, Calculation, LineOut, RuleViolation
from simulators.core import convert, fastpath, identify, rows, store
from simulators.core.context import Core
from simulators.core.db import lock_customers
from simulators.core.tables import Customer, Hold, Operation


def _lock(session: Session, core: Core, cust: Customer, with_ancestors: bool) -> None:
    if not core.db.postgres:
        return  # SQLite: BEGIN IMMEDIATE already serializes writers
    depth = len(core.program.referral.levels_bp) if core.program.referral and with_ancestors else 0
    ids = [cust.id, *store.ancestor_ids(session, cust.id, max(depth, 1 if with_ancestors else 0))]
    lock_customers(session, ids, core.db.postgres)


def _run_calc(
    program: Program,
    state: AccountState | None,
    draft: pb.ReceiptDraft,
    at: datetime,
    otp_ok: bool | None,
    redeem_points: int | None = None,
) -> Calculation:
    try:
        return rcalc.calculate(
            program,
            state,
            convert.lines_in(draft),
            redeem_points=draft.redeem_points if redeem_points is None else redeem_points,
            redeem_max=draft.redeem_max if redeem_points is None else False,
            at=at,
            otp_ok=otp_ok,
        )
    except RuleViolation as exc:
        if state is not None:
            exc = identify.otp_required(program, state.method, exc)
        raise convert.prefix_field(exc) from None


def balance_after(c: Calculation, debt: int, negative: bool) -> int:
    accrue = c.points_to_accrue if negative else max(0, c.points_to_accrue - debt)
    return c.balance_before - c.redeemed - c.goods_points + accrue


def needs_db(req: pb.CalculateRequest) -> bool:
    """False for an anonymous receipt: pure rule-engine work (no thread hop needed)."""
    return req.draft.customer.WhichOneof("id") is not None


def runs_inline(core: Core, req: pb.CalculateRequest) -> bool:
    """True when :func:`calculate` needs no thread: anonymous, or (SQLite file, no hold) one
    account SELECT on this thread's read connection, which never waits for the writer."""
    if not needs_db(req):
        return True
    return core.db.inline_reads and req.hold_ttl_s <= 0 and fastpath.is_fast_ref(req.draft.customer)


def _calc_pb(
    core: Core, acct: fastpath.Account, draft: pb.ReceiptDraft, at: datetime, now: datetime
) -> pb.CalculateResponse:
    c = _run_calc(core.program, acct.state(core.program, at, now), draft, at, acct.otp_ok)
    return convert.calc_to_pb(
        c,
        balance_after=balance_after(c, acct.debt, core.program.allow_negative_balance),
        display_name=mask_name(acct.name) if acct.name else "",
    )


def calculate(core: Core, req: pb.CalculateRequest) -> pb.CalculateResponse:
    draft = req.draft
    convert.validate_draft(draft)
    now = core.now()
    at = convert.when(draft.occurred_at, draft.HasField("occurred_at"), now)
    if not needs_db(req):
        return convert.calc_to_pb(_run_calc(core.program, None, draft, at, None), balance_after=0)
    if req.hold_ttl_s <= 0:  # read only: one SELECT on a DBAPI cursor, no transaction, no ORM
        with core.db.raw_reader() as cursor:
            acct = fastpath.read_account(cursor, core.db.sql, core.program, draft.customer, now)
        if acct is not None:
            return _calc_pb(core, acct, draft, at, now)

    def work(s: Session) -> pb.CalculateResponse:
        if draft.customer.WhichOneof("id") is None:
            c = _run_calc(core.program, None, draft, at, None)
            return convert.calc_to_pb(c, balance_after=0)
        ident = identify.resolve(s, core.program, draft.customer, at, now)
        cust = ident.customer
        if req.hold_ttl_s > 0:
            _lock(s, core, cust, with_ancestors=False)
        state = store.account_state(s, core.program, cust, at=at, now=now, method=ident.method)
        c = _run_calc(core.program, state, draft, at, ident.otp_ok)
        out = convert.calc_to_pb(
            c,
            balance_after=balance_after(c, cust.debt, core.program.allow_negative_balance),
            display_name=mask_name(cust.name) if cust.name else "",
        )
        reserved = c.redeemed + c.goods_points
        if req.hold_ttl_s > 0 and reserved > 0:
            hold = Hold(
                id=uuid.uuid4().hex,
                customer_id=cust.id,
                points=reserved,
                created_at=now,
                expires_at=now + timedelta(seconds=req.hold_ttl_s),
                state="live",
                register_id=draft.register_id,
            )
            s.add(hold)
            out.hold_id = hold.id
            out.hold_expires_at.CopyFrom(convert.dt_to_ts(hold.expires_at))
        return out

    return core.db.transaction(work, write=req.hold_ttl_s > 0)


def _check_expected(c: Calculation, exp: pb.Expected) -> None:
    mine = {lo.line_id: lo.discount for lo in c.lines}
    diffs: list[str] = []
    if exp.redeemed_points != c.redeemed:
        diffs.append(f"redeemed {exp.redeemed_points} != {c.redeemed}")
    for line_id, d in exp.line_discounts.items():
        if mine.get(line_id) != d:
            diffs.append(f"line {line_id} discount {d} != {mine.get(line_id)}")
    if exp.points_to_accrue and exp.points_to_accrue != c.points_to_accrue:
        diffs.append(f"accrual {exp.points_to_accrue} != {c.points_to_accrue}")
    if diffs:
        raise RuleViolation(
            "CALC_MISMATCH",
            "; ".join(diffs) + ": calculate again",
            max_points=c.max_points,
            limited_by=c.limited_by,
        )


def _keep_printed(program: Program, draft: pb.ReceiptDraft, c: Calculation, exp: pb.Expected) -> Calculation:
    """Offline commit: keep the printed line discounts when they are a valid spread of D."""
    if not exp.line_discounts or c.redeemed == 0:
        return c
    wanted = {lo.line_id: exp.line_discounts.get(lo.line_id, 0) for lo in c.lines}
    if sum(wanted.values()) != c.redeemed * program.pv:
        return c
    new_lines: list[LineOut] = []
    base = 0
    for ln, lo in zip(convert.lines_in(draft), c.lines, strict=True):
        disc, _accr = rcalc.effective_flags(ln, program)
        d = wanted[lo.line_id]
        cap = ln.amount - rcalc.line_floor(ln, program) if disc and ln.point_price == 0 else 0
        if d < 0 or d > max(cap, 0):
            return c
        new_lines.append(dataclasses.replace(lo, discount=d, paid=ln.amount - d))
        if lo.accrues:
            base += ln.amount - d
    if program.policy == "discount":
        accrue = 0
    else:
        rate = program.tier(c.tier).rate_bp
        accrue = base * rate // 10_000 // program.pv
    return dataclasses.replace(c, lines=tuple(new_lines), accrual_base=base, points_to_accrue=accrue)


def _replay(known: tuple[int, str, bytes], digest: str) -> pb.CommitResponse:
    op_id, content_hash, stored = known
    if content_hash != digest:
        raise RuleViolation(
            "RECEIPT_CONFLICT", "this idempotency key was used for another receipt", operation_id=str(op_id)
        )
    res = pb.CommitResponse.FromString(stored)
    res.replayed = True
    return res


def find_sale(session: Session, key: str) -> Operation | None:
    return session.scalar(select(Operation).where(Operation.kind == "sale", Operation.key == key))


def commit(core: Core, req: pb.CommitRequest) -> pb.CommitResponse:
    """Commit in the caller's thread (one transaction of its own)."""
    return core.db.transaction(commit_work(core, req))


async def commit_async(core: Core, req: pb.CommitRequest) -> pb.CommitResponse:
    """Commit from the event loop: validated here, applied by the database's writer (grouped
    with concurrent commits on SQLite, see :mod:`simulators.core.writer`)."""
    return await core.db.write(commit_work(core, req))


@dataclasses.dataclass(frozen=True, slots=True)
class _Buyer:
    person: rows.Person
    state: AccountState
    otp_ok: bool | None
    app_code: str


def _chain_depth(program: Program) -> int:
    """Ancestors a Commit reads and locks: every referral level, at least the inviter."""
    return max(len(program.referral.levels_bp) if program.referral else 0, 1)


def _buyer(s: Session, cursor: Any, core: Core, req: pb.CommitRequest, at: datetime, now: datetime) -> _Buyer:
    """The buyer, locked (PostgreSQL) and read with their lots and others' holds."""
    program, ref, hold, sql = core.program, req.draft.customer, req.hold_id, core.db.sql
    acct = fastpath.read_account(cursor, sql, program, ref, now, hold)
    method, otp_ok, app_code = "", None, ""
    if acct is None:  # app code, QR, phone + SMS code: identified through the ORM
        ident = identify.resolve(s, program, ref, at, now)
        method, otp_ok, app_code = ident.method, ident.otp_ok, ident.app_code
        ref = pb.CustomerRef(customer_id=str(ident.customer.id))
        acct = fastpath.read_account(cursor, sql, program, ref, now, hold)
        assert acct is not None
    if core.db.postgres:  # lock, then read again: the state after any concurrent commit
        rows.lock(cursor, sql, [acct.id, *rows.chain_ids(cursor, sql, acct.id, _chain_depth(program))])
        acct = fastpath.read_account(cursor, sql, program, ref, now, hold)
        assert acct is not None
    if method:
        acct = dataclasses.replace(acct, method=method, otp_ok=otp_ok)
    return _Buyer(rows.buyer(acct), acct.state(program, at, now), acct.otp_ok, app_code)


def commit_work(core: Core, req: pb.CommitRequest) -> Callable[[Session], pb.CommitResponse]:
    """Validate ``req`` and return the unit of work that applies it (re-runnable)."""
    draft = req.draft
    if not req.idempotency_key:
        raise convert.bad("idempotency_key", "idempotency_key is required")
    convert.validate_draft(draft)
    digest = convert.content_hash(convert.draft_content(draft))
    now = core.now()
    at = convert.when(draft.occurred_at, draft.HasField("occurred_at"), now)
    program = core.program
    sql = core.db.sql

    def work(s: Session) -> pb.CommitResponse:
        s.flush()  # earlier units' ORM changes, before the raw reads below
        if s.identity_map:  # customers change by plain UPDATEs (rows.write): reload, never reuse
            s.expire_all()
        cursor = s.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            return _work(s, cursor)
        finally:
            cursor.close()

    def _work(s: Session, cursor: Any) -> pb.CommitResponse:
        known = fastpath.find_sale(cursor, sql, req.idempotency_key)
        if known is not None:
            return _replay(known, digest)
        ident = None
        state = None
        unknown = False
        if draft.customer.WhichOneof("id") is not None:
            try:
                ident = _buyer(s, cursor, core, req, at, now)
            except RuleViolation as exc:  # a contact only (if_known) that matches nobody: anonymous
                if not (draft.customer.if_known and exc.code == "UNKNOWN_CUSTOMER"):
                    raise
                unknown = True
            else:
                state = ident.state
                if draft.customer.if_known and state.blocked:  # a blocked member's contact: the
                    ident, state, unknown = None, None, True  # sale, without loyalty (as refused)
        exp = req.expected if req.HasField("expected") else None
        redeem = exp.redeemed_points if (req.offline and exp is not None) else None
        c = _run_calc(program, state, draft, at, None if ident is None else ident.otp_ok, redeem)
        if exp is not None and not req.offline and (c.redeemed > 0 or exp.redeemed_points > 0):
            _check_expected(c, exp)
        if exp is not None and req.offline:
            c = _keep_printed(program, draft, c, exp)
        new_op = fastpath.NewOperation(
            kind="sale",
            key=req.idempotency_key,
            content_hash=digest,
            occurred_at=at,
            created_at=now,
            customer_id=None if ident is None else ident.person.id,
            store_id=draft.staff.store_id,
            terminal_id=draft.staff.terminal_id,
            register_id=draft.register_id,
            cashier_id=draft.staff.cashier_id,
            cashier_name=draft.staff.cashier_name,
            gross=c.gross,
            paid=convert.paid_total(c),
            discount=c.redeemed * program.pv + c.instant_discount,
            redeemed=c.redeemed + c.goods_points,
            accrued=c.points_to_accrue,
        )
        op_id = fastpath.insert_operation(cursor, sql, new_op)
        if ident is None:
            result = pb.CommitResponse(
                operation_id=str(op_id), calculation=convert.calc_to_pb(c, balance_after=0),
                customer_unknown=unknown,
            )
            state_json = json.dumps(_sale_state(program, draft, c, [], [], None, False))
        else:
            assert state is not None
            result, state_json = _apply(cursor, core, op_id, ident.person, state, draft, c, at, now)
            if ident.app_code:
                identify.consume_app_code(s, ident.app_code, op_id)
            if req.hold_id:
                fastpath.consume_hold(cursor, sql, req.hold_id, ident.person.id)
        fastpath.finish_operation(cursor, sql, op_id, state_json, result.SerializeToString())
        return result

    return work


def _sold_lines(program: Program, draft: pb.ReceiptDraft, c: Calculation) -> list[dict[str, Any]]:
    """Per line: point discount d_i and instant discount apart (refunds restore only d_i)."""
    ins = convert.lines_in(draft)
    caps = [
        ln.amount - rcalc.line_floor(ln, program) if rcalc.effective_flags(ln, program)[0] else 0
        for ln in ins
    ]
    d = rcalc.allocate(c.redeemed * program.pv, caps)
    out = []
    for ln, lo, di in zip(ins, c.lines, d, strict=True):
        point_d = 0 if ln.point_price > 0 else (lo.discount if c.instant_discount == 0 else di)
        out.append(
            {
                "id": ln.line_id,
                "qty": ln.qty_milli,
                "amount": ln.amount,
                "discount": point_d,
                "instant": lo.discount - point_d,
                "accruable": lo.accrues,
            }
        )
    return out


def _sale_state(
    program: Program,
    draft: pb.ReceiptDraft,
    c: Calculation,
    debits: list[dict[str, Any]],
    payouts: list[dict[str, Any]],
    inviter: int | None,
    first: bool,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "lines": _sold_lines(program, draft, c),
        "debits": debits,
        "payouts": payouts,
        "accrual_base": c.accrual_base,
        "inviter": inviter,
        "first": first,
        "returned": {},
        "restored": 0,
        "clawed": {},
        "money_refunded": 0,
        "amount_refunded": 0,
        "refunds": 0,
        **extra,
    }


def _apply(
    cursor: Any,
    core: Core,
    op_id: int,
    cust: rows.Person,
    state: AccountState,
    draft: pb.ReceiptDraft,
    c: Calculation,
    at: datetime,
    now: datetime,
) -> tuple[pb.CommitResponse, str]:
    """Debits, accrual, referral payouts, counters and tiers -> (result, the sale's state JSON)."""
    program = core.program
    cashier = draft.staff.cashier_id
    debt_before = cust.debt
    lots = {lot.lot_id: lot for lot in state.lots}
    debits: list[dict[str, Any]] = []
    for d in c.debits:
        lot = lots[d.lot_id]
        debits.append(
            {
                "lot": int(d.lot_id),
                "points": d.points,
                "cert": lot.certificate,
                "expires": lot.expires_at.isoformat() if lot.expires_at else None,
            }
        )
    sql = core.db.sql
    fastpath.take_lots(cursor, sql, [(int(d.lot_id), d.points) for d in c.debits])
    cert_used = any(d["cert"] for d in debits)
    winback_valid = any(lot.source == "winback" for lot in rcalc.open_lots(state.lots, at))
    spent = sum(d.points for d in c.debits)
    # movements and lots go straight to the cursor (ORM units of work cost more than the SQL)
    movements: list[tuple[int, int | None, str, int, datetime, str]] = []
    if spent:
        movements.append((cust.id, op_id, "redeem", -spent, at, cashier))
    expires = expiry_for(program, at)
    # spendable once the core holds them: a till clock running ahead must not hide them for minutes
    avail = available_from(program, min(at, now))
    payouts: list[dict[str, Any]] = []
    pb_payouts: list[pb.Payout] = []
    people = {cust.id: cust}  # one Person per customer id (see simulators.core.rows)

    def pay(who: rows.Person, kind: str, level: int, points: int) -> None:
        """store.credit without the ORM: repay debt first, the rest in a new lot."""
        if points <= 0:
            lot_id: int | None = None
        else:
            repaid = min(points, who.debt)
            who.debt -= repaid
            movements.append((who.id, op_id, kind, points, at, cashier))
            rest = points - repaid
            lot_id = None
            if rest:
                lot_id = fastpath.insert_lot(
                    cursor,
                    sql,
                    who.id,
                    kind,
                    rest,
                    at=at,
                    available_from=avail,
                    expires_at=expires,
                    op_id=op_id,
                )
                if who is cust and kind == "accrual":
                    own_lot[0] = rest
        payouts.append({"cust": who.id, "kind": kind, "level": level, "points": points, "lot": lot_id})
        pb_payouts.append(pb.Payout(customer_id=str(who.id), kind=kind, level=level, points=points))
        who.touched = now

    own_lot = [0]  # points of the buyer's own accrual lot
    pay(cust, "accrual", 0, c.points_to_accrue)
    first = cust.purchase_count == 0
    inviter_id = cust.inviter_id
    chain: list[rows.Person] = []
    if program.referral is not None or (first and inviter_id is not None):
        chain = rows.chain(cursor, sql, cust, _chain_depth(program), people)
    inv = chain[0] if chain and chain[0].id == inviter_id else None
    chain = chain[: len(program.referral.levels_bp)] if program.referral is not None else []
    if program.referral is not None:
        for level, (anc, points) in enumerate(
            zip(chain, referral_payouts(program, c.accrual_base), strict=False), start=1
        ):
            if not anc.blocked:
                pay(anc, "referral", level, points)
        inviter = chain[0] if chain else None
        if first and inviter is not None and not inviter.blocked and program.referral.invite_bonus_points:
            pay(inviter, "invite_bonus", 1, program.referral.invite_bonus_points)
    if first and inv is not None:
        inv.effective_invited += 1
        _retier(program, inv)
    cust.total_spent += convert.paid_total(c)
    cust.purchase_count += 1
    cust.first_purchase_at = cust.first_purchase_at or at
    cust.last_purchase_at = at if cust.last_purchase_at is None else max(cust.last_purchase_at, at)
    cust.touched = now
    for anc in chain:
        _retier(program, anc)
    tier = _retier(program, cust)
    rows.write(cursor, sql, list(people.values()))
    fastpath.insert_movements(cursor, sql, movements)
    own = 0 if avail > at else own_lot[0]
    state_json = json.dumps(
        _sale_state(
            program,
            draft,
            c,
            debits,
            payouts,
            inviter_id,
            first,
            cert_used=cert_used,
            winback=winback_valid,
            debt_before=debt_before,
        )
    )
    bal = _balance_after_commit(program, cust, state, c, at, own)
    calc_pb = convert.calc_to_pb(
        c,
        balance_after=balance_after(c, debt_before, program.allow_negative_balance),
        display_name=mask_name(cust.name) if cust.name else "",
    )
    result = pb.CommitResponse(
        operation_id=str(op_id),
        calculation=calc_pb,
        payouts=pb_payouts,
        tier=tier,
        balance=bal.total,
        debt=bal.shown_debt,
    )
    return result, state_json


def _retier(program: Program, who: rows.Person) -> str:
    """Re-evaluate the tier (never drops unless ``tier_demotion``), as store.retier."""
    who.tier = tier_for(
        program,
        total_spent=who.total_spent,
        purchase_count=who.purchase_count,
        effective_invited=who.effective_invited,
        current=who.tier or None,
    ).name
    return who.tier


def _balance_after_commit(
    program: Program, cust: rows.Person, state: AccountState, c: Calculation, at: datetime, accrued: int
) -> store.Balance:
    """The buyer's balance after the commit, from the state read at its start (no query)."""
    open_now = rcalc.open_lots(state.lots, at)
    kinds = {lot.lot_id: lot.certificate for lot in open_now}
    cert = sum(lot.points for lot in open_now if lot.certificate)
    ordinary = sum(lot.points for lot in open_now if not lot.certificate) + accrued
    for d in c.debits:
        if kinds.get(d.lot_id):
            cert -= d.points
        else:
            ordinary -= d.points
    return store.Balance(
        ordinary=ordinary, certificate=cert, debt=cust.debt, held=0, negative=program.allow_negative_balance
    )


def apply_sale(
    s: Session, core: Core, op_id: int, draft: pb.ReceiptDraft, at: datetime, now: datetime,
    *, current: int | None = None,
) -> tuple[int, pb.CommitResponse | None, str]:
    """Give ``draft``'s customer what the committed sale ``op_id`` gives a buyer (accrual,
    referral, invite bonus, counters, tiers; no redemption): a correction that attaches the
    customer to an anonymous sale (:mod:`simulators.core.corrections`). Returns the customer's
    id, the commit result and the sale's new state JSON; when ``current`` (the sale's customer
    already) is given, only resolves the customer: (id, None, "")."""
    s.flush()
    if s.identity_map:
        s.expire_all()
    cursor = s.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        req = pb.CommitRequest(idempotency_key="", draft=draft)
        ident = _buyer(s, cursor, core, req, at, now)
        if current is not None:
            return ident.person.id, None, ""
        c = _run_calc(core.program, ident.state, draft, at, ident.otp_ok, 0)
        result, state_json = _apply(cursor, core, op_id, ident.person, ident.state, draft, c, at, now)
        return ident.person.id, result, state_json
    finally:
        cursor.close()
