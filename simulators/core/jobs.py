"""Grants and periodic jobs of the reference core (loyalty-rules.md §1 Grants, Expiry, Holds).

- :func:`run_jobs` as of an instant: lapses holds, expires lots (expires_at <= at), grants
  birthday / special-date certificates (once a year per date, from ``days_before`` before the
  date until ``GRACE_DAYS`` after it) and win-back gifts (once per absence: keyed by the
  last purchase). A grant of 0 points is a reminder only (counted, nothing credited).
- :func:`issue_grant`: review (once per platform), partner (registers an unknown phone with
  channel ``partner:<name>``), manual, birthday, winback, special_date; idempotent by
  ``grant_key``.

Several replicas may run the jobs at once (over one PostgreSQL): each job's transaction first
takes its own transaction-scoped advisory lock (:func:`job_lock`), so the same job runs in one
replica at a time and the next one finds the work done (lots already at 0, holds released, grant
marks present); expiry locks the customers it touches, in id order, like a Commit does.

A grant whose rule has a cap is a *certificate* (own cap, spent first); otherwise it is an
ordinary lot. It expires ``valid_days`` after the grant (00:00 local), or by ``expiry_days``.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Session

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.rules.dates import birthday_in_year, expiry_for
from gateway.rules.program import GrantRule, Program
from gateway.rules.types import RuleViolation
from simulators.core import convert, identify, store
from simulators.core.context import Core
from simulators.core.db import lock_customers
from simulators.core.tables import Customer, GrantMark, Hold, LotRow, Operation, RegisterLease

GRACE_DAYS = 3
LEASE_KEEP = timedelta(days=30)  # register leases unclaimed this long are deleted (hold lapse job)
JOB_TIMEOUT = "10min"
# advisory lock keys of the jobs (any fixed 64-bit numbers; "posgw" + a job number)
JOB_LOCKS = {"holds": 0x706F736777_01, "expiry": 0x706F736777_02, "grants": 0x706F736777_03}


def job_lock(s: Session, job: str, postgres: bool) -> None:
    """PostgreSQL: wait for ``job``'s advisory lock, held until this transaction ends. A job may
    run long and wait for another replica's run: its transaction lifts the connection's statement
    and lock timeouts (:mod:`simulators.core.pgconf`) to ``JOB_TIMEOUT``."""
    if postgres:
        s.execute(sql_text(f"SET LOCAL statement_timeout = '{JOB_TIMEOUT}'"))
        s.execute(sql_text(f"SET LOCAL lock_timeout = '{JOB_TIMEOUT}'"))
        s.execute(sql_text("SELECT pg_advisory_xact_lock(:k)"), {"k": JOB_LOCKS[job]})


def _rule(program: Program, kind: str, platform: str = "") -> GrantRule | None:
    rules = [g for g in program.grants if g.kind == kind]
    for g in rules:
        if platform and g.platform == platform:
            return g
    return rules[0] if rules else None


def grant_lot(
    s: Session,
    program: Program,
    cust: Customer,
    kind: str,
    points: int,
    rule: GrantRule | None,
    at: datetime,
    mark: str,
    platform: str = "",
) -> LotRow | None:
    """Credit a grant and write its once-only mark; 0 points = reminder (mark only)."""
    lot: LotRow | None = None
    if points > 0:
        valid = rule.valid_days if rule is not None else 0
        expires = expiry_for(program, at, valid) if valid else expiry_for(program, at)
        cap = rule.cap_bp if rule is not None else 0
        lot, _ = store.credit(
            s,
            cust,
            points,
            kind,
            at=at,
            expires_at=expires,
            certificate=cap > 0,
            cap_bp=cap,
            pay_debt=cap == 0,
        )
        s.flush()
        cust.updated_at = at
    s.add(
        GrantMark(
            key=mark,
            customer_id=cust.id,
            kind=kind,
            lot_id=None if lot is None else lot.id,
            points=points,
            at=at,
        )
    )
    s.flush()
    return lot


def _dates_due(d: date, today: date, days_before: int) -> date | None:
    for year in (today.year - 1, today.year, today.year + 1):
        day = birthday_in_year(d, year)
        if day - timedelta(days=days_before) <= today <= day + timedelta(days=GRACE_DAYS):
            return day
    return None


def _parse(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        return None


def run_jobs(core: Core, req: pb.RunJobsRequest) -> pb.RunJobsResponse:
    now = core.now()
    at = convert.when(req.at, req.HasField("at"), now)
    program = core.program
    out = pb.RunJobsResponse()

    pg = core.db.postgres

    def holds(s: Session) -> None:
        job_lock(s, "holds", pg)
        res = s.execute(
            update(Hold).where(Hold.state == "live", Hold.expires_at <= at).values(state="released")
        )
        out.holds_released = int(getattr(res, "rowcount", 0) or 0)
        # register leases of gateways gone for long (a gateway names itself anew at each start);
        # a stream still alive after that takes its lease back on its next event (fence.check)
        s.execute(delete(RegisterLease).where(RegisterLease.claimed_at < at - LEASE_KEEP))

    def expiry(s: Session) -> None:
        job_lock(s, "expiry", pg)
        due = select(LotRow.customer_id).where(LotRow.remaining > 0, LotRow.expires_at <= at).distinct()
        ids = list(s.scalars(due))
        lock_customers(s, ids, core.db.postgres)
        rows = s.scalars(
            select(LotRow).where(LotRow.customer_id.in_(ids), LotRow.remaining > 0, LotRow.expires_at <= at)
            .execution_options(populate_existing=True)
        )
        for row in rows:
            out.lots_expired += 1
            out.points_expired += row.remaining
            store.record(s, row.customer_id, "expire", -row.remaining, row.expires_at or at, lot_id=row.id)
            row.remaining, row.expired = 0, True

    def grants(s: Session) -> None:
        job_lock(s, "grants", pg)
        today = at.astimezone(program.tz).date()
        for rule in program.grants:
            if rule.kind in ("birthday", "special_date"):
                _calendar_grants(s, core, rule, today, at, out)
            elif rule.kind == "winback" and rule.after_days > 0:
                _winback(s, core, rule, at, out)

    core.db.transaction(holds)
    core.db.transaction(expiry)
    core.db.transaction(grants)
    return out


def _calendar_grants(
    s: Session, core: Core, rule: GrantRule, today: date, at: datetime, out: pb.RunJobsResponse
) -> None:
    program = core.program
    for cust in s.scalars(select(Customer).where(Customer.blocked.is_(False))):
        dates = [cust.birth_date] if rule.kind == "birthday" else cust.extra_dates.split(",")
        for text in dates:
            d = _parse(text) if text else None
            day = None if d is None else _dates_due(d, today, rule.days_before)
            if day is None:
                continue
            mark = f"{rule.kind}:{cust.id}:{text.strip()}:{day.year}"
            if s.get(GrantMark, mark) is not None:
                continue
            lock_customers(s, [cust.id], core.db.postgres)
            grant_lot(s, program, cust, rule.kind, rule.points, rule, at, mark)
            if rule.points > 0:
                out.certificates_issued += 1
            else:
                out.reminders += 1


def _winback(s: Session, core: Core, rule: GrantRule, at: datetime, out: pb.RunJobsResponse) -> None:
    program = core.program
    tz = program.tz
    today = at.astimezone(tz).date()
    stmt = select(Customer).where(Customer.blocked.is_(False), Customer.last_purchase_at.is_not(None))
    for cust in s.scalars(stmt):
        last = cust.last_purchase_at
        if last is None or (today - last.astimezone(tz).date()).days < rule.after_days:
            continue
        mark = f"winback:{cust.id}:{last.isoformat()}"
        if s.get(GrantMark, mark) is not None:
            continue
        lock_customers(s, [cust.id], core.db.postgres)
        grant_lot(s, program, cust, "winback", rule.points, rule, at, mark)
        if rule.points > 0:
            out.certificates_issued += 1
        else:
            out.reminders += 1


def issue_grant(core: Core, req: pb.IssueGrantRequest) -> pb.IssueGrantResponse:
    program = core.program
    now = core.now()
    at = convert.when(req.at, req.HasField("at"), now)
    kind = req.kind or "manual"
    if kind not in ("review", "partner", "manual", "birthday", "winback", "special_date"):
        raise convert.bad("kind", f"unknown grant kind {kind!r}")
    rule = _rule(program, kind, req.platform)
    points = req.points or (rule.points if rule is not None else 0)
    if points <= 0:
        raise convert.bad("points", f"no points given and the program has no {kind} grant")
    digest = convert.content_hash({"c": str(req.customer), "k": kind, "p": points, "pl": req.platform})

    def work(s: Session) -> pb.IssueGrantResponse:
        if req.grant_key:
            known = s.scalar(
                select(Operation).where(Operation.kind == "grant", Operation.key == req.grant_key)
            )
            if known is not None:
                if known.content_hash != digest:
                    raise RuleViolation("RECEIPT_CONFLICT", "grant_key used for another grant")
                res = pb.IssueGrantResponse.FromString(known.result)
                res.replayed = True
                return res
        try:
            cust = identify.resolve(s, program, req.customer, at, now).customer
        except RuleViolation as exc:
            if not (kind == "partner" and exc.code == "UNKNOWN_CUSTOMER" and req.customer.phone):
                raise
            reg = pb.RegisterCustomerRequest(phone=req.customer.phone, channel=f"partner:{req.platform}")
            cust = identify.register(s, program, reg, at)[0]
        lock_customers(s, [cust.id], core.db.postgres)
        if kind == "review":
            mark = f"review:{cust.id}:{req.platform}"
        elif kind == "birthday":
            mark = f"birthday:{cust.id}:{cust.birth_date}:{at.astimezone(program.tz).year}"
        else:
            mark = f"{kind}:{cust.id}:{req.grant_key or at.isoformat()}"
        if s.get(GrantMark, mark) is not None:
            raise RuleViolation("GRANT_ALREADY_ISSUED", f"{kind} already granted ({mark.split(':', 2)[2]})")
        lot = grant_lot(s, program, cust, kind, points, rule, at, mark, req.platform)
        result = pb.IssueGrantResponse(lot_id="" if lot is None else str(lot.id), points=points)
        if lot is not None and lot.expires_at is not None:
            result.expires_at.CopyFrom(convert.dt_to_ts(lot.expires_at))
        if req.grant_key:
            s.add(
                Operation(
                    kind="grant",
                    key=req.grant_key,
                    content_hash=digest,
                    customer_id=cust.id,
                    occurred_at=at,
                    created_at=now,
                    accrued=points,
                    state="{}",
                    result=result.SerializeToString(),
                )
            )
        return result

    return core.db.transaction(work)
