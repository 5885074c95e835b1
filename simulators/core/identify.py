"""Who is the customer: CustomerRef resolution, registration, app codes and SMS codes.

Invariants:
- phones are stored in E.164 (``normalize_phone``); a phone that cannot be normalised is
  simply unknown (UNKNOWN_CUSTOMER), never an error of the whole receipt;
- an app code is 6 digits, valid 45 minutes from issue and consumed by the sale that uses
  it (Identify and Calculate check it without consuming; a consumed or old code is
  CODE_EXPIRED); a QR payload carries an app code;
- the welcome bonus is granted once per phone number ever (table ``welcomed_phones``);
- the inviter is fixed at registration from the referrer's referral code or phone.
"""

from __future__ import annotations

import functools
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.rules.dates import expiry_for
from gateway.rules.identity import normalize_phone
from gateway.rules.program import Program
from gateway.rules.types import RuleViolation
from simulators.core import codes, store
from simulators.core.tables import AppCodeRow, Card, Customer, WelcomedPhone

APP_CODE_TTL = timedelta(minutes=45)
QR_PREFIX = "posgw:app:"
_CODE_RE = re.compile(r"(\d{6})(?!.*\d{6})")


@dataclass(frozen=True, slots=True)
class Identified:
    customer: Customer
    method: str  # app_code, qr_payload, phone, phone_otp, card, customer_id
    otp_ok: bool | None
    strong: bool
    app_code: str = ""


def unknown(what: str) -> RuleViolation:
    return RuleViolation("UNKNOWN_CUSTOMER", f"no customer matches {what}; sell without loyalty")


@functools.lru_cache(maxsize=4096)
def phone_or_none(text: str) -> str | None:
    """E.164 or None (cached: parsing a phone costs far more than a database read)."""
    try:
        return normalize_phone(text)
    except ValueError:
        return None


def by_phone(session: Session, text: str) -> Customer | None:
    phone = phone_or_none(text)
    if phone is None:
        return None
    return session.scalar(select(Customer).where(Customer.phone == phone))


def _by_id(session: Session, text: str) -> Customer | None:
    try:
        return session.get(Customer, int(text))
    except (ValueError, OverflowError):
        return None


def _app_code(session: Session, code: str, at: datetime) -> AppCodeRow:
    row = session.get(AppCodeRow, code)
    if row is None:
        raise RuleViolation("CODE_EXPIRED", "unknown app code: ask the customer to refresh it")
    if row.used_by is not None or not row.issued_at - timedelta(minutes=5) <= at < row.expires_at:
        raise RuleViolation("CODE_EXPIRED", "app code used or older than 45 minutes: ask for a new one")
    return row


def phone_method(program: Program) -> str:
    """The identification method of a phone typed without an SMS code: always ``phone`` (weak
    unless the program lists ``phone`` in ``redeem_with``). It used to be ``phone_otp`` when the
    program offers SMS codes, which gave a phone without any code ``max_points`` from the tier
    cap (loyalty-rules.md §1 and §2.1 step 3 give weak identification 0); the OTP_REQUIRED
    answer to a redemption asked without a code comes from :func:`otp_required`."""
    del program  # kept in the signature: the method may one day depend on the program
    return "phone"


def otp_required(program: Program, method: str, exc: RuleViolation) -> RuleViolation:
    """§2.1 step 4: a redemption asked on a typed phone without a code, where the program offers
    ``phone_otp``, is OTP_REQUIRED (the engine, given the weak ``phone``, says
    REDEMPTION_NOT_PERMITTED); every other violation is returned as it is."""
    if (exc.code == "REDEMPTION_NOT_PERMITTED" and method == "phone"
            and "phone_otp" in program.redeem_with and "phone" not in program.redeem_with):
        return RuleViolation("OTP_REQUIRED", "confirm the phone with the SMS code first")
    return exc


def resolve(
    session: Session, program: Program, ref: pb.CustomerRef, at: datetime, now: datetime
) -> Identified:
    """CustomerRef -> customer and identification method; RuleViolation NOT_FOUND kinds."""
    kind = ref.WhichOneof("id")
    cust: Customer | None = None
    if kind == "phone":
        cust = by_phone(session, ref.phone)
        if cust is None:
            raise unknown("this phone")
        if ref.otp:
            ok = _otp_ok(session, cust.phone or "", ref.otp, now, at)
            return Identified(cust, "phone_otp", ok, ok)
        method = phone_method(program)
        return Identified(cust, method, None, method == "phone" and "phone" in program.redeem_with)
    if kind == "card":
        card = session.get(Card, ref.card.strip())
        cust = None if card is None else session.get(Customer, card.customer_id)
        if cust is None:
            raise unknown("this card")
        return Identified(cust, "card", None, "card" in program.redeem_with)
    if kind in ("app_code", "qr_payload"):
        text = ref.app_code.strip() if kind == "app_code" else ref.qr_payload
        m = _CODE_RE.search(text)
        if m is None:
            raise RuleViolation("CODE_EXPIRED", "not an app code: ask the customer to show the code again")
        row = _app_code(session, m.group(1), at)
        cust = session.get(Customer, row.customer_id)
        if cust is None:
            raise unknown("this app code")
        return Identified(cust, "app_code", None, True, app_code=row.code)
    if kind == "customer_id":
        cust = _by_id(session, ref.customer_id)
        if cust is None:
            raise unknown("this customer id")
        # the core's own id comes from an earlier strong identification (or an operator)
        return Identified(cust, "app_code", None, True)
    raise RuleViolation("INVALID_RECEIPT", "customer reference is empty", field="draft.customer")


def consume_app_code(session: Session, code: str, op_id: int) -> None:
    row = session.get(AppCodeRow, code)
    if row is not None and row.used_by is None:
        row.used_by = op_id


def issue_app_code(session: Session, cust: Customer, at: datetime) -> AppCodeRow:
    for _ in range(20):
        code = f"{secrets.randbelow(10**6):06d}"
        row = session.get(AppCodeRow, code)
        if row is None:
            row = AppCodeRow(code=code, customer_id=cust.id, issued_at=at, expires_at=at + APP_CODE_TTL)
            session.add(row)
            session.flush()
            return row
        if row.expires_at <= at or row.used_by is not None:  # recycle a dead code
            row.customer_id, row.issued_at, row.expires_at, row.used_by = cust.id, at, at + APP_CODE_TTL, None
            return row
    raise RuleViolation("UNAVAILABLE", "no free app code; try again")


def _otp_ok(session: Session, phone: str, code: str, now: datetime, at: datetime) -> bool:
    """The phone's confirmation code, valid when the receipt happened (``at``): a sale confirmed
    by a code and delivered after the code expired (the core was away) still counts
    (:mod:`simulators.core.codes`; a wrong code counts a try)."""
    return codes.check(session, phone, code, now, at=at).ok


def _new_referral_code(session: Session) -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    while True:
        code = "".join(secrets.choice(alphabet) for _ in range(8))
        if session.scalar(select(Customer.id).where(Customer.referral_code == code)) is None:
            return code


def find_inviter(session: Session, code: str) -> Customer | None:
    code = code.strip()
    if not code:
        return None
    cust = session.scalar(select(Customer).where(Customer.referral_code == code.upper()))
    if cust is None:
        cust = by_phone(session, code)
    if cust is None and code.isdigit():
        cust = _by_id(session, code)
    return cust


def register(
    session: Session, program: Program, req: pb.RegisterCustomerRequest, at: datetime
) -> tuple[Customer, bool, int]:
    """Create (or find) a customer. -> (customer, created, welcome points granted)."""
    phone = phone_or_none(req.phone) if req.phone else None
    if req.phone and phone is None:
        raise RuleViolation("INVALID_RECEIPT", f"not a phone number: {req.phone!r}", field="phone")
    if phone is not None:
        found = session.scalar(select(Customer).where(Customer.phone == phone))
        if found is not None:
            return found, False, 0
    if req.card:
        card = session.get(Card, req.card.strip())
        if card is not None:
            known = session.get(Customer, card.customer_id)
            if known is not None:
                return known, False, 0
    if not phone and not req.card:
        raise RuleViolation("INVALID_RECEIPT", "a phone or a card is required", field="phone")
    inviter = find_inviter(session, req.referrer_code)
    channel = req.channel or ("referral" if inviter is not None else "cashier")
    cust = Customer(
        phone=phone,
        referral_code=_new_referral_code(session),
        name=req.name,
        gender=req.gender,
        birth_date=req.birth_date,
        email=req.email,
        extra_dates=",".join(req.extra_dates),
        channel=channel,
        inviter_id=None if inviter is None else inviter.id,
        store_id=req.staff.store_id,
        cashier_id=req.staff.cashier_id,
        cashier_name=req.staff.cashier_name,
        blocked=False,
        tier="",
        debt=0,
        total_spent=0,
        purchase_count=0,
        effective_invited=0,
        created_at=at,
        updated_at=at,
    )
    session.add(cust)
    session.flush()
    store.retier(program, cust)
    if req.card:
        session.add(Card(card=req.card.strip(), customer_id=cust.id))
    welcome = 0
    if phone is not None and program.welcome_points > 0 and session.get(WelcomedPhone, phone) is None:
        session.add(WelcomedPhone(phone=phone, at=at))
        welcome = program.welcome_points
        store.credit(
            session,
            cust,
            welcome,
            "welcome",
            at=at,
            expires_at=expiry_for(program, at),
            cashier_id=req.staff.cashier_id,
        )
    session.flush()
    return cust, True, welcome
