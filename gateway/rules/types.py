"""Types of the pure rule engine: account state in, calculation out.

No I/O and no clock reads anywhere in ``gateway.rules``: time is an argument. The reference
core (``simulators/core``) and the gateway's offline policy evaluate programs with this one
implementation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Lot:
    """An open parcel of points. ``points`` is what is still open (> 0)."""

    lot_id: str
    source: str  # welcome, accrual, referral, invite_bonus, birthday, winback, review, partner, ...
    points: int
    created: datetime
    available_from: datetime
    expires_at: datetime | None  # None = never
    certificate: bool = False
    cap_bp: int = 0  # certificate's own cap, basis points


@dataclass(frozen=True, slots=True)
class AccountState:
    """A customer's account as of a calculation.

    ``held_by_others`` are points reserved by other tills' live holds: they stay in the
    balance but cannot be spent here. ``strength`` is "strong" or "weak"; ``method`` is the
    identification method name (app_code, phone, phone_otp, card, qr_payload, customer_id),
    checked against the program's ``redeem_with``.
    """

    customer_id: str
    tier: str
    lots: tuple[Lot, ...] = ()
    debt: int = 0
    held_by_others: int = 0
    total_spent: int = 0
    purchase_count: int = 0
    effective_invited: int = 0
    method: str = "app_code"
    blocked: bool = False
    negative_balance: int = 0  # < 0 only with allow_negative_balance


@dataclass(frozen=True, slots=True)
class LineIn:
    line_id: str
    amount: int
    qty_milli: int = 1000
    sku: str = ""
    category: str = ""
    min_unit_price: int | None = None
    discountable: bool = True
    accruable: bool = True
    point_price: int = 0  # > 0: goods for points


@dataclass(frozen=True, slots=True)
class LineOut:
    line_id: str
    discount: int
    paid: int
    accrues: bool
    points_paid: int = 0


@dataclass(frozen=True, slots=True)
class AppliedRule:
    rule_id: str
    amount: int
    reason: str


@dataclass(frozen=True, slots=True)
class Debit:
    lot_id: str
    points: int


@dataclass(frozen=True, slots=True)
class Calculation:
    customer_id: str
    tier: str
    lines: tuple[LineOut, ...]
    gross: int
    redeemable_base: int
    max_points: int
    limited_by: str
    redeemed_certificate: int
    redeemed_ordinary: int
    payable: int
    accrual_base: int  # B_a
    points_to_accrue: int
    balance_before: int
    instant_discount: int = 0
    goods_points: int = 0
    debits: tuple[Debit, ...] = ()  # which lots pay the redemption, in spending order
    applied_rules: tuple[AppliedRule, ...] = field(default=())

    @property
    def redeemed(self) -> int:
        return self.redeemed_certificate + self.redeemed_ordinary


class RuleViolation(Exception):
    """A business rule refuses the operation.

    ``code`` is one of loyalty-rules.md §2.5 (REDEMPTION_CAP_EXCEEDED, INSUFFICIENT_POINTS,
    INVALID_RECEIPT, ...); ``metadata`` carries available / max_points / limited_by / field.
    """

    def __init__(self, code: str, message: str, **metadata: str | int) -> None:
        self.code = code
        self.message = message
        self.metadata = {k: str(v) for k, v in metadata.items()}
        super().__init__(f"{code}: {message}")
