"""Calendar rules (loyalty-rules.md §1 Expiry, Grants): days follow the program's time zone."""

from __future__ import annotations

from datetime import date, datetime

from gateway.rules.program import Program


def expiry_for(program: Program, accrued_at: datetime, days: int | None = None) -> datetime | None:
    raise NotImplementedError


def birthday_in_year(birth: date, year: int) -> date:
    raise NotImplementedError
