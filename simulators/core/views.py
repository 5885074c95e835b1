"""Read-side operations of the reference core: customers, app codes, OTP, balance snapshots.

Each function is one short transaction returning a proto message; balances are computed at
the request's time (``at``), holds judged on the core's clock.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.rules.identity import mask_name
from gateway.rules.types import RuleViolation
from simulators.core import codes, convert, identify, store
from simulators.core.context import Core
from simulators.core.tables import Card, Customer

DEFAULT_PAGE = 500
MAX_PAGE = 5000


def customer_pb(s: Session, core: Core, cust: Customer, at: datetime, now: datetime) -> pb.Customer:
    program = core.program
    bal = store.balance(s, program, cust, at, now)
    certs = [
        pb.Certificate(
            lot_id=str(r.id),
            kind=r.source,
            points=r.remaining,
            cap_bp=r.cap_bp,
            expires_at=convert.dt_to_ts(r.expires_at),
        )
        for r in store.open_rows(s, cust.id, at)
        if r.certificate
    ]
    return pb.Customer(
        customer_id=str(cust.id),
        display_name=mask_name(cust.name) if cust.name else "",
        tier=cust.tier,
        balance=bal.total,
        ordinary_points=bal.ordinary,
        certificate_points=bal.certificate,
        debt=bal.shown_debt,
        held_points=bal.held,
        certificates=certs,
        blocked=cust.blocked,
        referral_code=cust.referral_code,
        phone=cust.phone or "",
    )


def identify_customer(core: Core, req: pb.IdentifyCustomerRequest) -> pb.IdentifyCustomerResponse:
    now = core.now()
    at = convert.when(req.at, req.HasField("at"), now)

    def work(s: Session) -> pb.IdentifyCustomerResponse:
        ident = identify.resolve(s, core.program, req.customer, at, now)
        out = customer_pb(s, core, ident.customer, at, now)
        out.strength = pb.IDENTIFICATION_STRENGTH_STRONG if ident.strong else pb.IDENTIFICATION_STRENGTH_WEAK
        return pb.IdentifyCustomerResponse(customer=out)

    return core.db.transaction(work, write=False)


def register_customer(core: Core, req: pb.RegisterCustomerRequest) -> pb.RegisterCustomerResponse:
    now = core.now()
    at = convert.when(req.occurred_at, req.HasField("occurred_at"), now)

    def work(s: Session) -> pb.RegisterCustomerResponse:
        cust, created, welcome = identify.register(s, core.program, req, at)
        out = customer_pb(s, core, cust, at, now)
        out.strength = pb.IDENTIFICATION_STRENGTH_WEAK
        return pb.RegisterCustomerResponse(customer=out, created=created, welcome_points=welcome)

    return core.db.transaction(work)


def issue_app_code(core: Core, req: pb.IssueAppCodeRequest) -> pb.IssueAppCodeResponse:
    now = core.now()
    at = convert.when(req.at, req.HasField("at"), now)

    def work(s: Session) -> pb.IssueAppCodeResponse:
        cust = identify.resolve(s, core.program, req.customer, at, now).customer
        row = identify.issue_app_code(s, cust, at)
        return pb.IssueAppCodeResponse(
            code=row.code,
            qr_payload=identify.QR_PREFIX + row.code,
            expires_at=convert.dt_to_ts(row.expires_at),
        )

    return core.db.transaction(work)


def _phone(text: str) -> str:
    phone = identify.phone_or_none(text)
    if phone is None:
        raise RuleViolation("INVALID_RECEIPT", "not a phone number", field="phone")
    return phone


def issue_code(core: Core, req: pb.SendOtpRequest) -> tuple[str, codes.Issued]:
    """(E.164 phone, the code issued or why not); the SMS is sent by the service, outside the
    transaction (:mod:`simulators.core.sms`)."""
    phone, now = _phone(req.phone), core.now()
    return phone, core.db.transaction(lambda s: codes.issue(s, phone, req.purpose or "spending", now))


def withdraw_code(core: Core, phone: str) -> None:
    core.db.transaction(lambda s: codes.withdraw(s, phone))


def verify_otp(core: Core, req: pb.VerifyOtpRequest) -> pb.VerifyOtpResponse:
    phone, now = _phone(req.phone), core.now()
    checked = core.db.transaction(lambda s: codes.check(s, phone, req.code, now))
    return pb.VerifyOtpResponse(ok=checked.ok, reason=checked.reason, tries_left=checked.tries_left)


def balances(core: Core, req: pb.GetBalancesRequest) -> pb.GetBalancesResponse:
    now = core.now()
    size = min(req.page_size or DEFAULT_PAGE, MAX_PAGE)
    if size < 0:
        raise convert.bad("page_size", "page_size must be >= 0")
    try:
        after = int(req.page_token) if req.page_token else 0
    except ValueError:
        raise convert.bad("page_token", "not a page token from this core") from None

    def work(s: Session) -> pb.GetBalancesResponse:
        stmt = select(Customer).where(Customer.id > after).order_by(Customer.id).limit(size + 1)
        if req.HasField("active_since"):
            stmt = stmt.where(Customer.updated_at >= convert.ts_to_dt(req.active_since))
        rows = list(s.scalars(stmt))
        out = pb.GetBalancesResponse(snapshot_at=convert.dt_to_ts(now), program_version=core.version)
        if len(rows) > size:
            rows = rows[:size]
            out.next_page_token = str(rows[-1].id)
        for cust in rows:
            bal = store.balance(s, core.program, cust, now, now)
            cards = list(s.scalars(select(Card.card).where(Card.customer_id == cust.id)))
            out.customers.append(
                pb.BalanceEntry(
                    customer_id=str(cust.id),
                    phone=cust.phone or "",
                    cards=cards,
                    display_name=mask_name(cust.name) if cust.name else "",
                    tier=cust.tier,
                    ordinary_points=bal.ordinary,
                    certificate_points=bal.certificate,
                    debt=bal.debt,
                    blocked=cust.blocked,
                    held_points=bal.held,
                )
            )
        return out

    return core.db.transaction(work, write=False)
