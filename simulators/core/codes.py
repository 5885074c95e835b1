"""Confirmation codes (the SMS codes of loyalty-rules.md §1, ``phone_otp``): issue and check.

Invariants:
- a code is 4 digits, valid :data:`CODE_TTL` from issue; only its salted SHA-256 is stored (the
  plain code leaves the core once, in the SendOtp answer and the SMS);
- a new code replaces the phone's previous one; codes are issued at most once per
  :data:`RESEND_AFTER` for one purpose (a registration code does not hold back the spending code
  of the sale that follows it) and :data:`MAX_PER_HOUR` times per hour per phone, whatever the
  purpose (``rate_limited``, with the seconds to wait);
- :data:`MAX_TRIES` wrong codes in a row lock the phone for :data:`LOCK_FOR` (``locked``: no new
  code, no check succeeds, even with the right code); a right code resets the count;
- a wrong, expired or missing code confirms nothing; a code stays valid until it expires (a
  Calculate and its Commit may both present it), judged at the receipt's time: a sale made while
  the code was valid and delivered after it expired (the core was away) is confirmed;
- a code whose SMS could not be sent is withdrawn (:func:`withdraw`) and does not hold back the
  next request, but it still counts towards the hourly limit (a provider that is down must not
  let a phone be flooded once it is back).
Pure database work on a session; the clock is passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from simulators.core.tables import ConfirmationCode

CODE_TTL = timedelta(minutes=10)
RESEND_AFTER = timedelta(seconds=60)
MAX_PER_HOUR = 5
MAX_TRIES = 5
LOCK_FOR = timedelta(minutes=15)
HOUR = timedelta(hours=1)
CLOCK_SKEW = timedelta(minutes=5)  # a till's clock behind the core's by up to this much


@dataclass(frozen=True, slots=True)
class Issued:
    status: str  # issued | rate_limited | locked
    code: str = ""
    retry_after_s: int = 0


@dataclass(frozen=True, slots=True)
class Checked:
    ok: bool
    reason: str = ""  # OTP_INVALID | OTP_EXPIRED | OTP_LOCKED
    tries_left: int = MAX_TRIES


def _digest(salt: str, phone: str, code: str) -> str:
    return hashlib.sha256(f"{salt}\x1f{phone}\x1f{code}".encode()).hexdigest()


def _wait(until: datetime, now: datetime) -> int:
    return max(1, int((until - now).total_seconds() + 0.999))


def issue(session: Session, phone: str, purpose: str, now: datetime) -> Issued:
    """A new code for ``phone`` (E.164), or why not."""
    row = session.get(ConfirmationCode, phone)
    if row is None:
        row = ConfirmationCode(phone=phone, tries=0, sent_in_window=0)
        session.add(row)
    if row.locked_until is not None and row.locked_until > now:
        return Issued("locked", retry_after_s=_wait(row.locked_until, now))
    if row.last_sent_at is not None and row.purpose == purpose and row.last_sent_at + RESEND_AFTER > now:
        return Issued("rate_limited", retry_after_s=_wait(row.last_sent_at + RESEND_AFTER, now))
    if row.window_start is None or row.window_start + HOUR <= now:
        row.window_start, row.sent_in_window = now, 0
    if row.sent_in_window >= MAX_PER_HOUR:
        return Issued("rate_limited", retry_after_s=_wait(row.window_start + HOUR, now))
    code = f"{secrets.randbelow(10**4):04d}"
    row.salt = secrets.token_hex(16)
    row.code_hash = _digest(row.salt, phone, code)
    row.purpose = purpose
    row.issued_at, row.expires_at, row.last_sent_at = now, now + CODE_TTL, now
    row.sent_in_window += 1
    return Issued("issued", code=code, retry_after_s=int(RESEND_AFTER.total_seconds()))


def withdraw(session: Session, phone: str) -> None:
    """The SMS was not sent: the code is void and the next request need not wait."""
    row = session.get(ConfirmationCode, phone)
    if row is not None:
        row.code_hash, row.expires_at, row.last_sent_at = "", None, None


def check(session: Session, phone: str, code: str, now: datetime, *, at: datetime | None = None) -> Checked:
    """Does ``code`` confirm ``phone``? The lock is judged ``now``; the code's validity at ``at``
    (when the receipt happened, never later than ``now``; from :data:`CLOCK_SKEW` before its
    issue): a sale confirmed in time and delivered late still counts. A wrong code counts a try
    (see the module docstring)."""
    row = session.get(ConfirmationCode, phone)
    if row is not None and row.locked_until is not None and row.locked_until > now:
        return Checked(False, "OTP_LOCKED", 0)
    if row is None or not row.code_hash:
        return Checked(False, "OTP_INVALID")
    when = now if at is None else min(at, now)
    issued = row.issued_at or now
    if row.expires_at is None or row.expires_at <= when or when < issued - CLOCK_SKEW:
        return Checked(False, "OTP_EXPIRED", MAX_TRIES - row.tries)
    if hmac.compare_digest(row.code_hash, _digest(row.salt, phone, code.strip())):
        row.tries = 0
        return Checked(True)
    row.tries += 1
    if row.tries >= MAX_TRIES:
        row.tries, row.locked_until = 0, now + LOCK_FOR
        row.code_hash, row.expires_at = "", None  # a lock voids the code too
        return Checked(False, "OTP_LOCKED", 0)
    return Checked(False, "OTP_INVALID", MAX_TRIES - row.tries)
