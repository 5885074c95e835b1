"""Calculate (loyalty-rules.md §2.1, §2.4): account state + receipt lines -> Calculation.

Pure: no I/O, no clock. ``at`` is the operation time (timezone-aware).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from gateway.rules.program import Program
from gateway.rules.types import AccountState, Calculation, LineIn, Lot


def open_lots(lots: Sequence[Lot], at: datetime) -> tuple[Lot, ...]:
    raise NotImplementedError


def spending_order(lots: Sequence[Lot]) -> list[Lot]:
    raise NotImplementedError


def allocate(total: int, capacities: Sequence[int]) -> list[int]:
    raise NotImplementedError


def line_floor(line: LineIn, program: Program) -> int:
    raise NotImplementedError


def effective_flags(line: LineIn, program: Program) -> tuple[bool, bool]:
    raise NotImplementedError


def calculate(
    program: Program,
    account: AccountState | None,
    lines: Sequence[LineIn],
    *,
    redeem_points: int = 0,
    redeem_max: bool = False,
    at: datetime,
    otp_ok: bool | None = None,
) -> Calculation:
    raise NotImplementedError
