"""The canonical receipt and the events drivers submit: frozen, integer money.

Invariants:
- money is integer minor units (kopecks), quantities integer thousandths (1.5 kg = 1500);
  vendor decimals are converted once, at the edge, by :func:`to_minor` / :func:`to_milli`;
- a ``Receipt``'s ``total`` equals the sum of its line amounts (checked by ``validate``);
- :meth:`Receipt.validate` is the one check of a receipt's bounds, whoever asks (the driver's
  wire parsing, :func:`sale_event`, the pipeline's :func:`validate_event` and ``calculate``);
  it does the work once per receipt object: a receipt is frozen, and the one bound that depends
  on the clock (not more than LATEST_AHEAD after now) only widens as time passes, so a receipt
  found valid stays valid. A receipt made by ``dataclasses.replace`` is a new object, checked
  anew;
- an event's ``key`` (idempotency key) is derived from the till's own identity of the
  receipt: the vendor document id when there is one, else register + shift + number +
  fiscal sign. Never a fresh random value per attempt: the same receipt resent carries
  the same key, and the core applies a key once;
- copies of one operation (one key, two paths: Evotor's till plugin and its cloud webhook) are
  reconciled by :func:`merge_copies`, whichever arrives first: the same kind, reference and goods
  (SKU, quantity, amount per line), stamped within COPY_CLOCK_SKEW_S; customer, points to redeem,
  redeem-max, hold, offline flag and expected redemption from the copy that has them (both having
  different values: a conflict); lines, time and every other field from the stored (first) copy,
  each empty one filled from the other (fiscal sign, document id, payments, cashier, store...).
  What the outbox does with the result (merge before delivery, a correction event after it, the
  operator queue for a conflict) is in :mod:`gateway.outbox`.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum

from gateway.errors import BadInput

MAX_AMOUNT = 10**13  # 100 billion roubles in kopecks: anything larger is a typo or an attack
MAX_QTY_MILLI = 10**9
MAX_LINES = 1000
MAX_ID = 256  # characters of an identifier (register, receipt, document, key, line id, sku...)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)  # no till sold a receipt earlier: a reset clock
LATEST_AHEAD = timedelta(days=2)  # a till clock ahead of the gateway's by more is a typo or an attack
_CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def check_id(value: str, field_name: str, *, required: bool = False) -> str:
    """An identifier as the gateway stores it: at most MAX_ID characters, none of them a control,
    format (bidi overrides, zero-width), surrogate, private-use, unassigned or line/paragraph
    separator character. Raises BadInput naming ``field_name``."""
    if not value:
        if required:
            raise BadInput("is required", field_name)
        return value
    if len(value) > MAX_ID:
        raise BadInput(f"at most {MAX_ID} characters", field_name)
    if not value.isprintable() or (not value.isascii() and any(
            unicodedata.category(ch) in _CONTROL_CATEGORIES for ch in value)):
        raise BadInput("must not contain control or invisible characters", field_name)
    return value


def check_time(value: datetime, field_name: str, *, now: datetime | None = None) -> datetime:
    """A document's time: with a UTC offset, not before 2000 and not more than LATEST_AHEAD
    after ``now`` (the gateway's clock). Raises BadInput naming ``field_name``."""
    if value.tzinfo is None:
        raise BadInput("time must carry a UTC offset", field_name)
    latest = (now or datetime.now(UTC)) + LATEST_AHEAD
    if not EARLIEST <= value <= latest:
        raise BadInput(f"time {value.isoformat()} is outside {EARLIEST.year}..{latest.date()}: "
                       "check the till's clock", field_name)
    return value


def to_minor(value: str | int | Decimal, field_name: str = "amount") -> int:
    """A vendor decimal amount in major units ("123.45", 123.45 as text) -> kopecks.

    Half-up rounding to the kopeck, as fiscal documents do. Floats are refused: pass
    the JSON text (``json.loads(..., parse_float=Decimal)``) or a Decimal.
    """
    return _scaled(value, 100, field_name)


def to_milli(value: str | int | Decimal, field_name: str = "quantity") -> int:
    """A vendor decimal quantity ("1.5") -> thousandths (1500), half-up."""
    return _scaled(value, 1000, field_name)


def _scaled(value: str | int | Decimal, scale: int, field_name: str) -> int:
    if isinstance(value, bool) or isinstance(value, float):
        raise BadInput("must be a decimal string or integer, not a float", field_name)
    try:
        dec = Decimal(value)
    except (InvalidOperation, ValueError, TypeError) as exc:
        raise BadInput(f"not a number: {value!r}", field_name) from exc
    if not dec.is_finite():
        raise BadInput(f"not a finite number: {value!r}", field_name)
    return int((dec * scale).quantize(Decimal(1), rounding=ROUND_HALF_UP))


class IdKind(StrEnum):
    """How the customer was identified at the till."""

    PHONE = "phone"
    CARD = "card"
    APP_CODE = "app_code"
    QR = "qr_payload"
    CUSTOMER_ID = "customer_id"


@dataclass(frozen=True, slots=True)
class CustomerId:
    kind: IdKind
    value: str
    otp: str = ""  # SMS code confirming a phone
    # a contact the till recorded (the buyer's phone for an e-receipt), not a loyalty
    # identification: the core sells without loyalty when it matches nobody (CustomerRef.if_known).
    # Not part of equality: the same phone sent as a contact and as an identification is the same
    # customer (a copy of a receipt stored before the flag existed is the same copy, not a conflict).
    if_known: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class Line:
    line_id: str
    sku: str
    name: str
    price: int  # unit price, kopecks
    qty_milli: int
    amount: int  # after the till's own discounts, kopecks
    category: str = ""
    discountable: bool = True
    accruable: bool = True
    min_unit_price: int | None = None


@dataclass(frozen=True, slots=True)
class Payment:
    kind: str  # cash, card, points, other
    amount: int


@dataclass(frozen=True, slots=True)
class Receipt:
    register_id: str
    receipt_number: str
    lines: tuple[Line, ...]
    occurred_at: datetime  # timezone-aware
    shift: str = ""
    fiscal_sign: str = ""
    document_id: str = ""  # the vendor's own id of the document, when it has one
    cashier_id: str = ""
    cashier_name: str = ""
    store_id: str = ""
    customer: CustomerId | None = None
    redeem_points: int = 0
    redeem_max: bool = False
    payments: tuple[Payment, ...] = ()
    driver: str = ""
    # set by validate() once it found this receipt sound (not a field of the receipt's value:
    # not compared, hashed, shown or copied by dataclasses.replace)
    _valid: bool = field(default=False, init=False, repr=False, compare=False)

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)

    def validate(self) -> Receipt:
        """Raise :class:`BadInput` naming the field for anything the core would refuse; return
        the receipt. A receipt found sound is not checked again (see the module docstring)."""
        if self._valid:
            return self
        if not self.register_id:
            raise BadInput("register id is required", "register_id")
        check_id(self.register_id, "register_id")
        for name in ("receipt_number", "shift", "fiscal_sign", "document_id", "cashier_id", "store_id"):
            check_id(getattr(self, name), name)
        if not self.lines:
            raise BadInput("a receipt needs at least one line", "lines")
        if len(self.lines) > MAX_LINES:
            raise BadInput(f"at most {MAX_LINES} lines", "lines")
        check_time(self.occurred_at, "occurred_at")
        seen: set[str] = set()
        for i, line in enumerate(self.lines):
            if (line.line_id and line.line_id not in seen and 0 < line.qty_milli <= MAX_QTY_MILLI
                    and 0 <= line.amount <= MAX_AMOUNT and 0 <= line.price <= MAX_AMOUNT
                    and (line.min_unit_price is None or line.min_unit_price >= 0)):
                seen.add(line.line_id)  # the common case: one test per line, the reasons below
                continue
            where = f"lines[{i}]"
            if not line.line_id:
                raise BadInput("line id is required", f"{where}.line_id")
            if line.line_id in seen:
                raise BadInput(f"duplicate line id {line.line_id!r}", f"{where}.line_id")
            if not 0 < line.qty_milli <= MAX_QTY_MILLI:
                raise BadInput("quantity must be positive and sane", f"{where}.quantity")
            if not 0 <= line.amount <= MAX_AMOUNT:
                raise BadInput("amount must be between 0 and 10^13 kopecks", f"{where}.amount")
            if not 0 <= line.price <= MAX_AMOUNT:
                raise BadInput("price must be between 0 and 10^13 kopecks", f"{where}.price")
            raise BadInput("min unit price must not be negative", f"{where}.min_unit_price")
        for i, line in enumerate(self.lines):
            check_id(line.line_id, f"lines[{i}].line_id")
            check_id(line.sku, f"lines[{i}].sku")
        for i, pay in enumerate(self.payments):
            if not 0 <= pay.amount <= MAX_AMOUNT:
                raise BadInput("payment amount must be between 0 and 10^13 kopecks",
                               f"payments[{i}].amount")
        if self.redeem_points < 0:
            raise BadInput("points to redeem must not be negative", "redeem_points")
        if self.redeem_points > MAX_AMOUNT:
            raise BadInput("points to redeem must be at most 10^13", "redeem_points")
        object.__setattr__(self, "_valid", True)  # frozen: the one write, by the check itself
        return self

    def sale_key(self) -> str:
        """The idempotency key of this receipt as a sale (see the module docstring)."""
        if self.document_id:
            return f"{self.driver}:{self.register_id}:doc:{self.document_id}"
        if not self.receipt_number:
            raise BadInput("a receipt number or document id is required to commit", "receipt_number")
        return (
            f"{self.driver}:{self.register_id}:{self.shift}:{self.receipt_number}:{self.fiscal_sign}"
        )


class EventKind(StrEnum):
    SALE = "sale"
    REFUND = "refund"
    CANCEL = "cancel"
    CORRECTION = "correction"  # attach a late copy's customer to a delivered sale (merge_copies)


@dataclass(frozen=True, slots=True)
class RefundLine:
    line_id: str
    qty_milli: int


@dataclass(frozen=True, slots=True)
class Event:
    """What a driver submits: a closed sale, a (partial) refund, or a cancellation.

    ``key`` is the event's idempotency key; ``sale_key`` names the sale a refund or cancel
    refers to. ``receipt`` carries the full content of a sale (and of a refund receipt when
    the till sends one). ``offline`` is set by the pipeline when the till was answered from
    the offline policy; ``hold_id`` when the core reserved points at calculate time.
    ``calc_token`` is the token the gateway issued at calculate, as the till carried it back:
    the pipeline verifies it, applies what it says (customer, points, hold, offline) and does
    not store it.
    """

    kind: EventKind
    key: str
    register_id: str
    occurred_at: datetime
    receipt: Receipt | None = None
    sale_key: str = ""
    refund_lines: tuple[RefundLine, ...] = ()
    refund_full: bool = False
    refund_amount: int = 0
    offline: bool = False
    hold_id: str = ""
    expected_redeemed: int | None = None
    cashier_id: str = ""
    cashier_name: str = ""
    extra: tuple[tuple[str, str], ...] = field(default=())
    calc_token: str = ""


def validate_event(event: Event) -> Event:
    """Raise :class:`BadInput` for an event no driver may store: a key or reference with control
    characters, an absurd time, negative or absurd refund figures, an invalid receipt. The
    pipeline checks every event before it is stored, whatever the driver."""
    check_id(event.key, "key", required=True)
    check_id(event.register_id, "register_id", required=True)
    check_id(event.sale_key, "sale_key")
    check_id(event.hold_id, "hold_id")
    check_id(event.cashier_id, "cashier_id")
    check_time(event.occurred_at, "occurred_at")
    if not 0 <= event.refund_amount <= MAX_AMOUNT:
        raise BadInput("refund amount must be between 0 and 10^13 kopecks", "refund_amount")
    for i, line in enumerate(event.refund_lines):
        check_id(line.line_id, f"refund_lines[{i}].line_id", required=True)
        if not 0 < line.qty_milli <= MAX_QTY_MILLI:
            raise BadInput("refunded quantity must be positive and sane", f"refund_lines[{i}].qty_milli")
    if event.expected_redeemed is not None and not 0 <= event.expected_redeemed <= MAX_AMOUNT:
        raise BadInput("redeemed points must be between 0 and 10^13", "expected_redeemed")
    if event.receipt is not None:
        event.receipt.validate()
    return event


def sale_event(receipt: Receipt, *, key: str | None = None) -> Event:
    receipt.validate()
    return Event(
        kind=EventKind.SALE,
        key=key or receipt.sale_key(),
        register_id=receipt.register_id,
        occurred_at=receipt.occurred_at,
        receipt=receipt,
        cashier_id=receipt.cashier_id,
        cashier_name=receipt.cashier_name,
    )


COPY_CLOCK_SKEW_S = 600.0  # two copies of one receipt are stamped at most this far apart


class CopyVerdict(StrEnum):
    """What :func:`merge_copies` found two events under one key to be."""

    SAME = "same"  # the new copy adds nothing the stored one lacks
    MERGED = "merged"  # copies of one operation; the merge adds something to the stored one
    CONFLICT = "conflict"  # the key was reused for something else: other goods, amounts, customer...


@dataclass(frozen=True, slots=True)
class Merge:
    """The outcome of :func:`merge_copies`: the verdict, the merged event (the stored one when
    SAME or CONFLICT), whether the merge adds loyalty data (customer, points, hold, offline) the
    stored copy lacked, and for a CONFLICT what differs."""

    verdict: CopyVerdict
    event: Event
    adds_loyalty: bool = False
    why: str = ""


def _goods(r: Receipt) -> list[tuple[str, int, int]]:
    return sorted((line.sku, line.qty_milli, line.amount) for line in r.lines)


def _pick(stored: object, new: object, empty: object) -> object:
    """The stored value unless it is empty and the new one is not."""
    return new if stored == empty and new != empty else stored


def merge_copies(stored: Event, new: Event) -> Merge:
    """Reconcile two events under one idempotency key (the rule; see the module docstring).

    They are copies of one operation when they have the same kind and reference (sale_key, refund
    lines, full, amount), the same goods (SKU, quantity, amount per line, in any order), are
    stamped within COPY_CLOCK_SKEW_S and their loyalty data do not contradict each other. Loyalty
    data (customer, points to redeem, redeem-max, hold, offline, expected redemption) are taken
    from the copy that has them: the till's (plugin) copy has them, a cloud copy often not; both
    having a value and the values differing is a CONFLICT. Everything else (lines with their ids,
    names and flags, time, fiscal sign, document id, shift, number, payments, cashier, store) is
    the stored (first) copy's, each empty field filled from the new copy; extras are joined. So
    the result is the same whichever copy came first, except for the non-loyalty details that
    both copies carry in their own way."""
    def ref(e: Event) -> tuple[object, ...]:
        return (e.kind, e.sale_key, e.refund_lines, e.refund_full, e.refund_amount)

    if ref(stored) != ref(new):
        return Merge(CopyVerdict.CONFLICT, stored, why="another kind of operation or another reference")
    if abs((stored.occurred_at - new.occurred_at).total_seconds()) > COPY_CLOCK_SKEW_S:
        return Merge(CopyVerdict.CONFLICT, stored, why="stamped more than 10 minutes apart")
    ra, rb = stored.receipt, new.receipt
    if (ra is None) != (rb is None):
        return Merge(CopyVerdict.CONFLICT, stored, why="one copy carries a receipt, the other not")
    if ra is not None and rb is not None and _goods(ra) != _goods(rb):
        return Merge(CopyVerdict.CONFLICT, stored, why="other goods or amounts")
    loyalty_ev = [("offline", False), ("hold_id", ""), ("expected_redeemed", None)]
    loyalty_rc = [("customer", None), ("redeem_points", 0), ("redeem_max", False)]
    for name, empty in loyalty_ev:
        x, y = getattr(stored, name), getattr(new, name)
        if x != empty and y != empty and x != y:
            return Merge(CopyVerdict.CONFLICT, stored, why=f"another {name}")
    if ra is not None and rb is not None:
        for name, empty in loyalty_rc:
            x, y = getattr(ra, name), getattr(rb, name)
            if x != empty and y != empty and x != y:
                return Merge(CopyVerdict.CONFLICT, stored, why=f"another {name.replace('_', ' ')}")
    ev_fields = {name: _pick(getattr(stored, name), getattr(new, name), empty) for name, empty in
                 [*loyalty_ev, ("cashier_id", ""), ("cashier_name", "")]}
    extra = stored.extra + tuple(kv for kv in new.extra if kv not in stored.extra)
    receipt = ra
    if ra is not None and rb is not None:
        rc_fields = {name: _pick(getattr(ra, name), getattr(rb, name), empty) for name, empty in
                     [*loyalty_rc, ("fiscal_sign", ""), ("document_id", ""), ("shift", ""),
                      ("receipt_number", ""), ("cashier_id", ""), ("cashier_name", ""), ("store_id", ""),
                      ("payments", ()), ("driver", "")]}
        receipt = replace(ra, **rc_fields)  # type: ignore[arg-type]
    merged = replace(stored, receipt=receipt, extra=extra, **ev_fields)  # type: ignore[arg-type]
    if merged == stored:
        return Merge(CopyVerdict.SAME, stored)
    adds = any(getattr(merged, n) != getattr(stored, n) for n, _ in loyalty_ev) or (
        receipt is not None and ra is not None
        and any(getattr(receipt, n) != getattr(ra, n) for n, _ in loyalty_rc))
    return Merge(CopyVerdict.MERGED, merged, adds_loyalty=adds)


def correction_event(merged: Event, n: int = 1) -> Event:
    """The correction that brings a delivered sale up to ``merged`` (a later copy's customer):
    key ``<sale key>:correction:<n>``, applied once by the core (AttachCustomer); n = 1 is
    the customer's attachment, the one correction defined today."""
    return replace(merged, kind=EventKind.CORRECTION, key=f"{merged.key}:correction:{n}", sale_key=merged.key)


def same_operation(a: Event, b: Event) -> bool:
    """True when two events under one key are copies of one operation that reached us by two
    paths (Evotor's plugin and its cloud webhook), i.e. :func:`merge_copies` can reconcile them:
    the same kind and reference, the same goods (SKU, quantity, amount per line), stamped within
    COPY_CLOCK_SKEW_S, and customer, points and hold that do not contradict each other (one copy
    may lack them). What one path lacks or writes its own way (cashier, payments, names, the
    time's precision and zone) does not count. False means the key was reused for something else."""
    return merge_copies(a, b).verdict != CopyVerdict.CONFLICT


def derived_key(*parts: str) -> str:
    """A stable key from several identity parts (hashed when long)."""
    joined = ":".join(parts)
    if len(joined) <= 200:
        return joined
    return hashlib.sha256(joined.encode()).hexdigest()
