"""drivers.sbis.mapping: receipts from FFD JSON, phones, zones, return matching as tables."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from drivers.sbis import mapping
from gateway.errors import BadInput
from gateway.receipt import EventKind, IdKind

AT = 1741978931  # 2025-03-14 19:02:11 as Moscow wall clock read as UTC


def body(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "code": 3,
        "operationType": 1,
        "dateTime": AT,
        "totalSum": 74950,
        "cashTotalSum": 0,
        "ecashTotalSum": 74950,
        "fiscalDriveNumber": "7380440700112233",
        "fiscalDocumentNumber": 5127,
        "fiscalSign": 2871540093,
        "kktRegId": "0006543210012345",
        "shiftNumber": 88,
        "buyerPhoneOrAddress": "+79035550142",
        "operator": "Иванова",
        "items": [
            {"name": "Кофе зерновой 1 кг", "price": 64950, "quantity": 1, "sum": 64950},
            {"name": "Сливки 10%", "price": 5000, "quantity": 2, "sum": 10000},
        ],
    }
    base.update(changes)
    return base


def receipt(b: dict[str, Any], zone: str = "Europe/Moscow") -> Any:
    return mapping.receipt_of(
        b, fn="7380440700112233", fd=5127, register_id="till-1", zone=zone, store_id="s1"
    )


def test_a_sale_becomes_the_canonical_receipt() -> None:
    r = receipt(body())
    assert r.total == 74950 and [ln.line_id for ln in r.lines] == ["1", "2"]
    assert r.lines[1].qty_milli == 2000 and r.lines[1].price == 5000
    assert r.customer is not None and (r.customer.kind, r.customer.value) == (IdKind.PHONE, "+79035550142")
    assert r.occurred_at == datetime(2025, 3, 14, 16, 2, 11, tzinfo=UTC)  # Moscow is UTC+3
    assert (r.receipt_number, r.shift, r.fiscal_sign, r.document_id) == (
        "5127",
        "88",
        "2871540093",
        "7380440700112233:5127",
    )
    assert r.payments[0].kind == "card" and r.payments[0].amount == 74950 and r.store_id == "s1"
    event = mapping.sale_of(r, mapping.doc_key("7380440700112233", 5127))
    assert event.kind == EventKind.SALE and event.key == "sbis:7380440700112233:5127"


def test_utc_zone_and_fractional_quantity() -> None:
    b = body(
        items=[{"name": "Сыр", "price": 89900, "quantity": Decimal("0.35"), "sum": 31465}],
        totalSum=31465,
        ecashTotalSum=31465,
    )
    r = receipt(b, zone="")
    assert r.lines[0].qty_milli == 350 and r.occurred_at == datetime.fromtimestamp(AT, UTC)


@pytest.mark.parametrize(
    ("value", "customer", "problem"),
    [
        ("+79035550142", "+79035550142", False),
        ("8 (903) 555-01-42", "8 (903) 555-01-42", False),  # kept as typed: the core normalises
        ("+7 495 123-45-67", "+7 495 123-45-67", False),  # a landline: no longer dropped
        ("+375 29 123-45-67", "+375 29 123-45-67", False),  # abroad: no longer dropped
        (79035550142, "79035550142", False),  # a number written back as text
        ("buyer@example.com", None, False),
        ("", None, False),
        ("   ", None, False),
        (None, None, False),
        ("+7 903 555-01-42 доб. 12", None, True),
        ("позвонить Ивану", None, True),
        ("1" * 16, None, True),
        (True, None, True),
    ],
)
def test_buyer_is_read_by_the_toolkit_and_an_unreadable_one_is_reported(
    value: object, customer: str | None, problem: bool
) -> None:
    who, why = mapping.buyer(value)
    assert (who.value if who else None) == customer and bool(why) == problem
    assert who is None or who.kind == IdKind.PHONE
    assert "buyerPhoneOrAddress" in why or not problem


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("+79035550142", "+79035550142"),
        ("89035550142", "+79035550142"),
        ("7 (903) 555-01-42", "+79035550142"),
        ("9035550142", "+79035550142"),
        ("+7 495 123-45-67", "4951234567"),
        ("8 (495) 123-45-67", "4951234567"),
        ("+375291234567", "375291234567"),
    ],
)
def test_index_phone_lets_a_sale_and_its_return_meet_however_typed(value: str, key: str) -> None:
    assert mapping.index_phone(value) == key


def test_a_receipt_keeps_a_landline_and_sells_anonymously_with_an_unreadable_phone() -> None:
    r = receipt(body(buyerPhoneOrAddress="+7 (495) 123-45-67"))
    assert r.customer is not None
    assert (r.customer.kind, r.customer.value) == (IdKind.PHONE, "+7 (495) 123-45-67")
    assert r.customer.if_known  # a contact: the core sells without loyalty when it knows nobody
    assert receipt(body(buyerPhoneOrAddress="доб. 12")).customer is None
    assert receipt(body(buyerPhoneOrAddress="buyer@example.com")).customer is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"totalSum": 1}, "totalSum"),
        ({"totalSum": "749.50"}, "totalSum"),
        ({"items": []}, "items"),
        ({"items": [{"name": "x", "price": 1, "quantity": 1.5, "sum": 1}]}, "items[0].quantity"),
        ({"items": [{"name": "x", "price": -1, "quantity": 1, "sum": 1}], "totalSum": 1}, "price"),
        ({"dateTime": "2025-03-14"}, "dateTime"),
        ({"dateTime": 10**15}, "dateTime"),
        ({"items": "x"}, "items"),
    ],
)
def test_malformed_receipts_are_bad_input(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(BadInput) as info:
        receipt(body(**changes))
    assert field in (info.value.field or "")


def test_operation_type() -> None:
    assert mapping.operation(body()) == 1
    for bad in ("1", None, True):
        with pytest.raises(BadInput):
            mapping.operation(body(operationType=bad))


def sale_entry(key: str, at: float, items: list[tuple[str, int, int]]) -> mapping.SaleEntry:
    lines = tuple((str(i + 1), n, p, q) for i, (n, p, q) in enumerate(items))
    total = sum(p * q // 1000 for _, p, q in items)
    return mapping.SaleEntry(key, at, total, total, lines)


def ret(items: list[tuple[str, int, int]]) -> Any:
    b = body(
        operationType=2,
        items=[{"name": n, "price": p, "quantity": q // 1000, "sum": p * q // 1000} for n, p, q in items],
    )
    b["totalSum"] = b["ecashTotalSum"] = sum(i["sum"] for i in b["items"])
    return receipt(b)


def test_a_return_of_some_lines_names_the_lines_of_the_latest_sale_that_holds_them() -> None:
    old = sale_entry("sbis:F:1", 100.0, [("Кофе", 64950, 1000), ("Сливки", 5000, 2000)])
    new = sale_entry("sbis:F:2", 200.0, [("Сливки", 5000, 2000)])
    decision, after = mapping.match_return(ret([("Сливки", 5000, 1000)]), [old, new], 300.0)
    assert (decision.sale_key, decision.lines, decision.full, decision.amount) == (
        "sbis:F:2",
        (("1", 1000),),
        False,
        0,
    )
    assert after is not None and after.lines[0][3] == 1000 and after.left == 5000
    decision, _ = mapping.match_return(ret([("Кофе", 64950, 1000)]), [old, new], 300.0)
    assert decision.sale_key == "sbis:F:1" and decision.lines == (("1", 1000),)


def test_returning_everything_at_once_is_a_full_refund_and_later_sales_are_not_candidates() -> None:
    sale = sale_entry("sbis:F:1", 100.0, [("Кофе", 64950, 1000)])
    decision, after = mapping.match_return(ret([("Кофе", 64950, 1000)]), [sale], 300.0)
    assert decision.full and decision.sale_key == "sbis:F:1" and after is not None and after.left == 0
    decision, after = mapping.match_return(ret([("Кофе", 64950, 1000)]), [sale], 50.0)
    assert decision.sale_key == "" and decision.amount == 64950 and after is None


def test_unknown_items_refund_an_amount_and_the_sale_stays_in_amount_mode() -> None:
    sale = sale_entry("sbis:F:1", 100.0, [("Кофе", 64950, 1000)])
    decision, after = mapping.match_return(ret([("Чай", 25900, 1000)]), [sale], 300.0)
    assert decision == mapping.Decision("sbis:F:1", amount=25900)
    assert after is not None and after.by_amount and after.left == 64950 - 25900
    decision, _ = mapping.match_return(ret([("Кофе", 39050, 1000)]), [after], 400.0)
    assert decision.amount == 39050 and not decision.lines  # by amount again, even if the name matches


def test_decisions_and_entries_round_trip_through_json() -> None:
    d = mapping.Decision("sbis:F:1", (("2", 500),), False, 0, "why")
    assert mapping.Decision.from_json(d.to_json()) == d
    e = sale_entry("sbis:F:1", 100.0, [("Кофе", 64950, 1000)])
    assert mapping.SaleEntry.from_json(e.to_json()) == e


def test_refund_event_carries_the_decision() -> None:
    r = ret([("Кофе", 64950, 1000)])
    ev = mapping.refund_of(r, "sbis:F:9", mapping.Decision("sbis:F:1", (("1", 1000),)))
    assert ev.kind == EventKind.REFUND and ev.sale_key == "sbis:F:1" and ev.refund_lines[0].qty_milli == 1000
    assert not ev.refund_full and ev.refund_amount == 0 and ev.receipt is r


def test_raw_time_round_trip_through_the_zone() -> None:
    when = datetime(2025, 3, 14, 16, 2, 11, tzinfo=UTC)
    assert mapping.raw_of(when, "Europe/Moscow") == AT
    assert mapping.occurred_at(mapping.raw_of(when, "Asia/Vladivostok"), "Asia/Vladivostok") == when
