"""gateway.receipt: decimal conversion at the edge, Receipt.validate's bounds, the idempotency
keys (sale_key, derived_key), sale_event and same_operation (two copies of one operation)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from gateway.errors import BadInput
from gateway.receipt import (
    COPY_CLOCK_SKEW_S,
    MAX_AMOUNT,
    MAX_LINES,
    MAX_QTY_MILLI,
    CopyVerdict,
    CustomerId,
    Event,
    EventKind,
    IdKind,
    Line,
    Payment,
    Receipt,
    RefundLine,
    check_id,
    check_time,
    correction_event,
    derived_key,
    merge_copies,
    sale_event,
    same_operation,
    to_milli,
    to_minor,
    validate_event,
)

MSK = timezone(timedelta(hours=3))
AT = datetime(2025, 3, 9, 12, 30, tzinfo=MSK)


def line(line_id: str = "1", **kw: object) -> Line:
    base: dict[str, object] = {"sku": "sku-" + line_id, "name": "Milk", "price": 8990,
                               "qty_milli": 2000, "amount": 17980}
    base.update(kw)
    return Line(line_id, **base)  # type: ignore[arg-type]


def receipt(**kw: object) -> Receipt:
    base: dict[str, object] = {
        "register_id": "R1", "receipt_number": "42", "lines": (line("1"), line("2", amount=100)),
        "occurred_at": AT, "shift": "7", "fiscal_sign": "FS1", "driver": "native",
    }
    base.update(kw)
    return Receipt(**base)  # type: ignore[arg-type]


# ------------------------------------------------------------------ to_minor / to_milli


@pytest.mark.parametrize(("value", "expected"), [
    ("123.45", 12345),
    ("0", 0),
    ("0.00", 0),
    ("1", 100),
    (7, 700),
    (Decimal("99.99"), 9999),
    ("1.004", 100),
    ("1.005", 101),  # half-up, not banker's rounding (which gives 100)
    ("2.675", 268),
    ("0.125", 13),  # banker's would give 12
    ("-1.005", -101),  # half-up rounds the magnitude: away from zero
    ("-0.004", 0),
    ("1e2", 10000),
    (" 12.5 ", 1250),  # Decimal accepts surrounding blanks
    ("100000000000", 10**13),
])
def test_to_minor_table(value: str | int | Decimal, expected: int) -> None:
    assert to_minor(value) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("1.5", 1500),
    ("1", 1000),
    (3, 3000),
    ("0.001", 1),
    ("0.0004", 0),
    ("0.0005", 1),  # half-up
    ("0.0015", 2),
    ("2.0025", 2003),  # banker's would give 2002
    (Decimal("0.333"), 333),
])
def test_to_milli_table(value: str | int | Decimal, expected: int) -> None:
    assert to_milli(value) == expected


@pytest.mark.parametrize("value", [1.5, 0.1, True, False])
def test_floats_and_bools_are_refused_naming_the_field(value: object) -> None:
    with pytest.raises(BadInput, match="not a float") as err:
        to_minor(value, "lines[0].price")  # type: ignore[arg-type]
    assert err.value.field == "lines[0].price"


@pytest.mark.parametrize(("value", "message"), [
    ("abc", "not a number"),
    ("", "not a number"),
    ("1,50", "not a number"),
    (None, "not a number"),
    ([1], "not a number"),
    ("NaN", "not a finite number"),
    ("Infinity", "not a finite number"),
    ("-inf", "not a finite number"),
])
def test_non_numbers_are_bad_input(value: object, message: str) -> None:
    with pytest.raises(BadInput, match=message) as err:
        to_milli(value)  # type: ignore[arg-type]
    assert err.value.field == "quantity"
    with pytest.raises(BadInput) as err:
        to_minor(value)  # type: ignore[arg-type]
    assert err.value.field == "amount"


# ------------------------------------------------------------------ Receipt


def test_total_is_the_sum_of_line_amounts() -> None:
    assert receipt().total == 17980 + 100
    assert receipt(lines=()).total == 0


def test_validate_returns_the_receipt_when_sound() -> None:
    r = receipt(lines=(line("1", qty_milli=MAX_QTY_MILLI, amount=MAX_AMOUNT, price=MAX_AMOUNT,
                            min_unit_price=0),
                       line("2", qty_milli=1, amount=0, price=0)),
                redeem_points=0)
    assert r.validate() is r
    many = receipt(lines=tuple(line(str(i)) for i in range(MAX_LINES)))
    assert many.validate() is many



def test_validate_checks_a_receipt_once_and_a_replaced_one_anew(monkeypatch: pytest.MonkeyPatch) -> None:
    # the driver's parsing, sale_event and the pipeline each ask; the checks run once per receipt
    r, twin = receipt(), receipt()
    assert r.validate() is r
    calls: list[str] = []
    monkeypatch.setattr("gateway.receipt.check_time", lambda *a, **k: calls.append("checked"))
    assert r.validate() is r and sale_event(r).receipt is r
    assert calls == []  # found sound before: not checked again
    validate_event(sale_event(r))
    assert calls == ["checked"]  # the event's own time; its receipt is not checked again
    calls.clear()
    # being checked is not part of the receipt's value
    assert r == twin and hash(r) == hash(twin) and repr(r) == repr(twin)
    changed = replace(r, receipt_number="43")  # a new receipt: checked anew
    assert changed.validate() is changed and calls == ["checked"]
    with pytest.raises(BadInput) as info:
        replace(r, register_id="").validate()
    assert info.value.field == "register_id"
    bad = replace(r, redeem_points=-1)
    for _ in range(2):  # a receipt found unsound is checked again at every ask, and fails again
        with pytest.raises(BadInput) as info:
            validate_event(Event(EventKind.SALE, "k", "R1", AT, receipt=bad))
        assert info.value.field == "redeem_points"

def _bad_line_receipts() -> list[tuple[Receipt, str, str]]:
    ok = line("0")
    cases: list[tuple[tuple[Line, ...], str, str]] = [
        ((ok, line("")), "lines[1].line_id", "line id is required"),
        ((ok, line("0")), "lines[1].line_id", "duplicate line id '0'"),
        ((line("1", qty_milli=0),), "lines[0].quantity", "positive"),
        ((line("1", qty_milli=-1000),), "lines[0].quantity", "positive"),
        ((line("1", qty_milli=MAX_QTY_MILLI + 1),), "lines[0].quantity", "sane"),
        ((line("1", amount=-1),), "lines[0].amount", "amount must be between 0 and 10^13 kopecks"),
        ((line("1", amount=MAX_AMOUNT + 1),), "lines[0].amount",
         "amount must be between 0 and 10^13 kopecks"),
        ((ok, line("1", price=-1)), "lines[1].price", "price must be between 0 and 10^13 kopecks"),
        ((line("1", price=MAX_AMOUNT + 1),), "lines[0].price", "price must be between 0 and 10^13 kopecks"),
        ((line("1", min_unit_price=-1),), "lines[0].min_unit_price", "must not be negative"),
    ]
    return [(receipt(lines=lines), where, msg) for lines, where, msg in cases] + [
        (receipt(register_id=""), "register_id", "register id is required"),
        (receipt(lines=()), "lines", "at least one line"),
        (receipt(lines=tuple(line(str(i)) for i in range(MAX_LINES + 1))), "lines", "at most 1000 lines"),
        (receipt(occurred_at=datetime(2025, 3, 9, 12, 30)), "occurred_at", "UTC offset"),
        (receipt(redeem_points=-1), "redeem_points", "must not be negative"),
    ]


@pytest.mark.parametrize(("bad", "where", "message"), _bad_line_receipts())
def test_validate_names_the_field(bad: Receipt, where: str, message: str) -> None:
    with pytest.raises(BadInput) as err:
        bad.validate()
    assert err.value.field == where
    assert str(err.value).startswith(where + ": ")
    assert message in str(err.value)


def test_validate_reports_the_first_bad_line() -> None:
    r = receipt(lines=(line("1"), line("2", amount=-5), line("3", qty_milli=0)))
    with pytest.raises(BadInput) as err:
        r.validate()
    assert err.value.field == "lines[1].amount"


# ------------------------------------------------------------------ sale_key / sale_event


@pytest.mark.parametrize(("kw", "key"), [
    ({}, "native:R1:7:42:FS1"),
    ({"fiscal_sign": ""}, "native:R1:7:42:"),
    ({"shift": "", "fiscal_sign": ""}, "native:R1::42:"),
    ({"document_id": "D-9"}, "native:R1:doc:D-9"),
    ({"document_id": "D-9", "receipt_number": ""}, "native:R1:doc:D-9"),
    ({"driver": "evotor", "register_id": "R2"}, "evotor:R2:7:42:FS1"),
])
def test_sale_key_table(kw: dict[str, object], key: str) -> None:
    assert receipt(**kw).sale_key() == key


def test_sale_key_ignores_what_may_differ_between_resends() -> None:
    a = receipt()
    b = receipt(cashier_id="c2", payments=(Payment("cash", 1),), redeem_points=5,
                occurred_at=AT + timedelta(seconds=30), customer=CustomerId(IdKind.CARD, "77"))
    assert a.sale_key() == b.sale_key()
    assert receipt(fiscal_sign="FS2").sale_key() != a.sale_key()
    assert receipt(driver="poster").sale_key() != a.sale_key()


def test_sale_key_needs_a_number_or_document_id() -> None:
    with pytest.raises(BadInput, match="receipt number or document id") as err:
        receipt(receipt_number="").sale_key()
    assert err.value.field == "receipt_number"


def test_sale_event_carries_the_receipt_and_its_key() -> None:
    r = receipt(cashier_id="c1", cashier_name="Анна")
    e = sale_event(r)
    assert (e.kind, e.key, e.register_id, e.occurred_at, e.receipt) == (
        EventKind.SALE, "native:R1:7:42:FS1", "R1", AT, r)
    assert (e.cashier_id, e.cashier_name, e.sale_key, e.offline, e.calc_token) == (
        "c1", "Анна", "", False, "")
    assert sale_event(r, key="given").key == "given"


def test_sale_event_validates_first() -> None:
    with pytest.raises(BadInput, match="register id"):
        sale_event(receipt(register_id=""), key="k")


# ------------------------------------------------------------------ derived_key


def test_derived_key_joins_short_parts() -> None:
    assert derived_key("evotor", "R1", "doc", "abc") == "evotor:R1:doc:abc"
    assert derived_key("one") == "one"
    assert derived_key() == ""


def test_derived_key_hashes_beyond_200_characters() -> None:
    at_limit = ("x" * 99, "y" * 100)  # 99 + 1 + 100 = 200
    assert derived_key(*at_limit) == "x" * 99 + ":" + "y" * 100
    long = ("x" * 100, "y" * 100)  # 201
    expected = hashlib.sha256(("x" * 100 + ":" + "y" * 100).encode()).hexdigest()
    assert derived_key(*long) == expected
    assert len(derived_key(*long)) == 64
    assert derived_key(*long) == derived_key(*long)  # stable
    assert derived_key("x" * 100, "y" * 101) != expected


def test_derived_key_hashes_utf8() -> None:
    parts = ("ж" * 150, "ё" * 60)
    assert derived_key(*parts) == hashlib.sha256(":".join(parts).encode("utf-8")).hexdigest()


# ------------------------------------------------------------------ same_operation


def sale(r: Receipt | None = None, **kw: object) -> Event:
    r = r or receipt(customer=CustomerId(IdKind.PHONE, "+79990000000"), redeem_points=10)
    base: dict[str, object] = {"kind": EventKind.SALE, "key": "k", "register_id": "R1",
                               "occurred_at": AT, "receipt": r}
    base.update(kw)
    return Event(**base)  # type: ignore[arg-type]


def test_same_operation_ignores_cashier_payments_names_and_time_zone() -> None:
    a = sale()
    assert a.receipt is not None
    other_path = replace(
        a.receipt, cashier_id="", cashier_name="", payments=(Payment("card", 18080),),
        lines=tuple(replace(x, name=x.name.upper(), line_id="L" + x.line_id, price=0)
                    for x in reversed(a.receipt.lines)),
        occurred_at=AT.astimezone(UTC))
    b = sale(other_path, occurred_at=AT.astimezone(UTC) + timedelta(seconds=COPY_CLOCK_SKEW_S),
             cashier_id="x", extra=(("a", "b"),))
    assert same_operation(a, b) and same_operation(b, a)


@pytest.mark.parametrize("change", [
    "later", "kind", "sale_key", "refund_lines", "refund_full", "refund_amount",
    "qty", "amount", "sku", "customer", "points", "extra_line", "no_receipt",
])
def test_same_operation_false_when_anything_that_counts_differs(change: str) -> None:
    a = sale()
    assert a.receipt is not None
    r = a.receipt
    first = r.lines[0]
    changed: dict[str, Event] = {
        "later": sale(occurred_at=AT + timedelta(seconds=COPY_CLOCK_SKEW_S + 0.001)),
        "kind": sale(kind=EventKind.REFUND),
        "sale_key": sale(sale_key="other"),
        "refund_lines": sale(refund_lines=(RefundLine("1", 1000),)),
        "refund_full": sale(refund_full=True),
        "refund_amount": sale(refund_amount=1),
        "qty": sale(replace(r, lines=(replace(first, qty_milli=1000), *r.lines[1:]))),
        "amount": sale(replace(r, lines=(replace(first, amount=1), *r.lines[1:]))),
        "sku": sale(replace(r, lines=(replace(first, sku="other"), *r.lines[1:]))),
        "customer": sale(replace(r, customer=CustomerId(IdKind.PHONE, "+79990000001"))),
        "points": sale(replace(r, redeem_points=11)),
        "extra_line": sale(replace(r, lines=(*r.lines, line("9")))),
        "no_receipt": sale(receipt=None),
    }
    b = changed[change]
    assert not same_operation(a, b)
    assert not same_operation(b, a)


def test_same_operation_without_receipts() -> None:
    refund = Event(EventKind.REFUND, "k", "R1", AT, sale_key="s", refund_lines=(RefundLine("1", 500),))
    assert same_operation(refund, replace(refund, occurred_at=AT - timedelta(minutes=10)))
    assert not same_operation(refund, replace(refund, occurred_at=AT - timedelta(minutes=10, seconds=1)))
    assert not same_operation(refund, replace(refund, refund_lines=(RefundLine("1", 501),)))


# ------------------------------------------------------------------ merge_copies


def test_merge_copies_takes_loyalty_from_the_copy_that_has_it_whichever_comes_first() -> None:
    till = sale()  # customer, 10 points
    assert till.receipt is not None
    cloud = sale(replace(till.receipt, customer=None, redeem_points=0, fiscal_sign="FS1",
                         payments=(Payment("card", 100),), cashier_id=""), hold_id="")
    till = replace(till, hold_id="H1")
    one, two = merge_copies(till, cloud), merge_copies(cloud, till)
    assert one.verdict == two.verdict == CopyVerdict.MERGED
    assert not one.adds_loyalty and two.adds_loyalty  # the till's copy adds loyalty to the cloud's
    for m in (one, two):
        r = m.event.receipt
        assert r is not None
        assert (r.customer, r.redeem_points, m.event.hold_id) == (till.receipt.customer, 10, "H1")
        assert (r.fiscal_sign, r.payments) == ("FS1", (Payment("card", 100),))
    assert merge_copies(one.event, cloud).verdict == CopyVerdict.SAME
    assert merge_copies(till, till).verdict == CopyVerdict.SAME


def test_the_same_phone_as_a_contact_and_as_an_identification_is_one_customer() -> None:
    """CustomerId.if_known is not part of equality: a copy stored before the flag existed (an
    SBIS page re-read across the upgrade) is the same copy, not a RECEIPT_CONFLICT."""
    phone = CustomerId(IdKind.PHONE, "+7 495 123-45-67")
    contact = CustomerId(IdKind.PHONE, "+7 495 123-45-67", if_known=True)
    assert phone == contact and hash(phone) == hash(contact)
    a = sale()
    assert a.receipt is not None
    before, after = sale(replace(a.receipt, customer=phone)), sale(replace(a.receipt, customer=contact))
    assert merge_copies(before, after).verdict == merge_copies(after, before).verdict == CopyVerdict.SAME


def test_merge_copies_keeps_the_stored_lines_and_time() -> None:
    a = sale()
    assert a.receipt is not None
    other_ids = replace(a.receipt, lines=tuple(replace(x, line_id="L" + x.line_id) for x in a.receipt.lines))
    b = sale(other_ids, occurred_at=AT + timedelta(seconds=30), extra=(("uuid", "u1"),))
    m = merge_copies(a, b)
    assert m.verdict == CopyVerdict.MERGED and m.event.receipt is not None
    assert m.event.receipt.lines == a.receipt.lines and m.event.occurred_at == a.occurred_at
    assert m.event.extra == (("uuid", "u1"),)


@pytest.mark.parametrize(("change", "why"), [
    ("customer", "customer"), ("points", "redeem points"), ("hold", "hold_id"), ("amount", "goods"),
])
def test_merge_copies_conflicts_name_what_differs(change: str, why: str) -> None:
    a = sale(hold_id="H1")
    assert a.receipt is not None
    r = a.receipt
    b = {
        "customer": replace(a, receipt=replace(r, customer=CustomerId(IdKind.PHONE, "+79990000001"))),
        "points": replace(a, receipt=replace(r, redeem_points=11)),
        "hold": replace(a, hold_id="H2"),
        "amount": replace(a, receipt=replace(r, lines=(replace(r.lines[0], amount=1), *r.lines[1:]))),
    }[change]
    m = merge_copies(a, b)
    assert m.verdict == CopyVerdict.CONFLICT and why in m.why and m.event == a


def test_correction_event_names_the_sale() -> None:
    fix = correction_event(sale(key="S-1"))
    assert (fix.kind, fix.key, fix.sale_key) == (EventKind.CORRECTION, "S-1:correction:1", "S-1")


# ------------------------------------------------------------------ one set of bounds (issue 11, item 4)


@pytest.mark.parametrize("value", ["9\x00", "R\u202e1", "a\u200bb", "x\ny", "\ue000", "a" * 257])
def test_identifiers_refuse_control_invisible_and_overlong(value: str) -> None:
    with pytest.raises(BadInput) as info:
        check_id(value, "receipt_number")
    assert info.value.field == "receipt_number"


@pytest.mark.parametrize("value", ["42", "Касса №1", "чек/7-A", "a" * 256, "☕ 2"])
def test_identifiers_accept_printable_text(value: str) -> None:
    assert check_id(value, "receipt_number") == value


@pytest.mark.parametrize("when", [datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC),
                                  datetime(2026, 1, 4, tzinfo=UTC)])
def test_times_outside_the_window_are_refused(when: datetime) -> None:
    with pytest.raises(BadInput, match="check the till's clock"):
        check_time(when, "occurred_at", now=datetime(2026, 1, 1, tzinfo=UTC))
    assert check_time(datetime(2026, 1, 2, tzinfo=UTC), "t", now=datetime(2026, 1, 1, tzinfo=UTC))


def test_events_are_bounded_whatever_the_driver() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    ok = Event(EventKind.REFUND, "k", "r", at, sale_key="s", refund_lines=(RefundLine("l", 1000),))
    assert validate_event(ok) is ok
    for bad, field_name in (
        (replace(ok, key="k\x00"), "key"),
        (replace(ok, refund_amount=-1), "refund_amount"),
        (replace(ok, refund_lines=(RefundLine("l", -1000),)), "refund_lines[0].qty_milli"),
        (replace(ok, expected_redeemed=-5), "expected_redeemed"),
        (replace(ok, occurred_at=datetime(1970, 1, 1, tzinfo=UTC)), "occurred_at"),
    ):
        with pytest.raises(BadInput) as info:
            validate_event(bad)
        assert info.value.field == field_name


def test_receipt_payments_must_not_be_negative() -> None:
    r = Receipt("r", "1", (Line("l", "s", "n", 100, 1000, 100),), datetime(2026, 1, 1, tzinfo=UTC),
                payments=(Payment("card", -10_000),))
    with pytest.raises(BadInput) as info:
        r.validate()
    assert info.value.field == "payments[0].amount"
