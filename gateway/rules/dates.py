"""Calendar rules (loyalty-rules.md §1 Expiry, Grants): days follow the program's time zone.

A lot accrued at instant t with N days of life expires at 00:00 local time (program zone) on
local_date(t) + N days; N = 0 means never. Deferred availability (``defer_days``) uses the same
midnight rule. A 29 February birthday falls on 28 February in non-leap years. All datetimes
are timezone-aware; a naive one is a programming error (ValueError).
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, time, timedelta

from gateway.rules.program import Program


def _aware(at: datetime, name: str) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {at.isoformat()}")
    return at


def local_date(program: Program, at: datetime) -> date:
    """The calendar date of ``at`` in the program's time zone."""
    return _aware(at, "at").astimezone(program.tz).date()


def local_midnight(program: Program, day: date) -> datetime:
    """00:00 of ``day`` in the program's time zone (aware)."""
    return datetime.combine(day, time(0), tzinfo=program.tz)


def expiry_for(program: Program, accrued_at: datetime, days: int | None = None) -> datetime | None:
    """When a lot accrued at ``accrued_at`` expires: 00:00 local on local date + N days.

    ``days`` defaults to the program's ``expiry_days``; None is returned when N == 0 (never).
    """
    n = program.expiry_days if days is None else days
    if n < 0:
        raise ValueError(f"days must be >= 0, got {n}")
    if n == 0:
        _aware(accrued_at, "accrued_at")
        return None
    return local_midnight(program, local_date(program, accrued_at) + timedelta(days=n))


def available_from(program: Program, accrued_at: datetime) -> datetime:
    """When accrued points become spendable: at once, or 00:00 local + ``defer_days``."""
    if program.defer_days == 0:
        return _aware(accrued_at, "accrued_at")
    return local_midnight(program, local_date(program, accrued_at) + timedelta(days=program.defer_days))


def birthday_in_year(birth: date, year: int) -> date:
    """The birthday as celebrated in ``year``: 29 Feb -> 28 Feb in non-leap years."""
    if birth.month == 2 and birth.day == 29 and not calendar.isleap(year):
        return date(year, 2, 28)
    return birth.replace(year=year)


def birthday_grant_day(birth: date, year: int, days_before: int = 0) -> date:
    """The local date a birthday grant is issued in ``year`` (``days_before`` the birthday)."""
    return birthday_in_year(birth, year) - timedelta(days=days_before)
