"""Builders shared by the rule-engine tests (times are aware; Moscow unless stated)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from gateway.rules.types import Lot

MSK = ZoneInfo("Europe/Moscow")


def msk(y: int, m: int, d: int, hh: int = 12, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=MSK)


T0 = msk(2024, 1, 1)


def lot(
    lot_id: str,
    points: int,
    *,
    created: datetime = T0,
    expires_at: datetime | None = None,
    certificate: bool = False,
    cap_bp: int = 0,
    available_from: datetime | None = None,
    source: str = "accrual",
) -> Lot:
    return Lot(
        lot_id=lot_id,
        source=source,
        points=points,
        created=created,
        available_from=created if available_from is None else available_from,
        expires_at=expires_at,
        certificate=certificate,
        cap_bp=cap_bp,
    )
