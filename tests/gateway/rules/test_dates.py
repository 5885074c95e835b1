"""Calendar rules: expiry at 00:00 local, deferral, 29 February birthdays."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta

import pytest

from gateway.rules.dates import available_from, birthday_grant_day, birthday_in_year, expiry_for, local_date
from gateway.rules.program import Program

from .helpers import MSK, msk


def test_expiry_is_midnight_local_on_accrual_date_plus_n(seeds: dict[str, Program]) -> None:
    p = seeds["seed002"]
    assert expiry_for(p, msk(2025, 3, 9, 23, 59)) == msk(2026, 3, 9, 0)
    # 21:30 UTC on 9 March is already 10 March in Moscow: the local date counts.
    late = datetime(2025, 3, 9, 21, 30, tzinfo=UTC)
    assert local_date(p, late) == date(2025, 3, 10)
    expires = expiry_for(p, late)
    assert expires == msk(2026, 3, 10, 0)
    assert expires is not None and expires.utcoffset() == timedelta(hours=3)


def test_expiry_follows_the_program_zone(seeds: dict[str, Program]) -> None:
    p = dataclasses.replace(seeds["seed003"], expiry_days=30)
    at = datetime(2025, 1, 31, 20, 30, tzinfo=UTC)  # 00:30 on 1 February in Tbilisi (UTC+4)
    expires = expiry_for(p, at)
    assert expires is not None
    assert (expires.date(), expires.hour, expires.utcoffset()) == (date(2025, 3, 3), 0, timedelta(hours=4))


def test_explicit_days_and_never(seeds: dict[str, Program]) -> None:
    p0, p2 = seeds["seed000"], seeds["seed002"]
    assert expiry_for(p0, msk(2025, 1, 1)) is None  # expiry_days 0: never
    assert expiry_for(p2, msk(2025, 1, 1), 0) is None
    assert expiry_for(p0, msk(2025, 5, 14, 9), 15) == msk(2025, 5, 29, 0)
    with pytest.raises(ValueError):
        expiry_for(p2, datetime(2025, 1, 1))  # naive
    with pytest.raises(ValueError):
        expiry_for(p2, msk(2025, 1, 1), -1)


def test_available_from(seeds: dict[str, Program]) -> None:
    p = seeds["seed002"]
    at = msk(2025, 3, 9, 15)
    assert available_from(p, at) == at
    assert available_from(dataclasses.replace(p, defer_days=14), at) == msk(2025, 3, 23, 0)


def test_29_february_birthdays() -> None:
    leap = date(2000, 2, 29)
    assert birthday_in_year(leap, 2025) == date(2025, 2, 28)
    assert birthday_in_year(leap, 2028) == date(2028, 2, 29)
    assert birthday_in_year(date(1990, 5, 14), 2025) == date(2025, 5, 14)
    assert birthday_grant_day(leap, 2025, days_before=3) == date(2025, 2, 25)
    assert birthday_grant_day(date(1990, 3, 1), 2024, days_before=1) == date(2024, 2, 29)


def test_helpers_zone_is_moscow() -> None:
    assert msk(2025, 1, 1).tzinfo is MSK
