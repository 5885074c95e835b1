"""drivers.onec.mapping: cheques -> receipts and events (keys, line ids, points), CalcResult -> answers."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from drivers.onec import mapping, wire
from gateway.errors import BadInput
from gateway.receipt import EventKind, IdKind
from tests.drivers.fake_context import calc_result
from tests.drivers.onec import envelopes as e

MSK = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 3, 14, 12, 0, tzinfo=MSK)


def cheque(*args: object, **kw: object) -> wire.Cheque:
    env = wire.parse_envelope(e.envelope(e.cheque(*args, **kw)), max_bytes=1 << 20)  # type: ignore[arg-type]
    return wire.read_cheque(env.requests[0][1], MSK)


def test_keys_are_the_cheques_identity_in_the_stores_date() -> None:
    late = cheque(when="2026-03-14T22:30:00+00:00")  # 01:30 on the 15th in Moscow
    assert mapping.key_of(late, MSK) == "onec:SHOP1:POS1:42:2026-03-15:sale"
    assert mapping.key_of(cheque(request_id="other"), MSK) == mapping.key_of(cheque(), MSK)
    assert mapping.key_of(cheque(op="Return", reference=e.reference()), MSK).endswith(":return")
    assert len(mapping.cheque_key("S" * 100, "P" * 100, "N", "2026-01-01", "Sale")) == 64  # hashed when long


def test_line_ids_follow_articles() -> None:
    items = (
        ("1", "A", "1", "1", "1"),
        ("2", "B", "1", "1", "1"),
        ("3", "A", "1", "1", "1"),
        ("4", "", "1", "1", "1"),
    )
    assert mapping.line_ids(cheque(items=items)) == ["A", "B", "A#2", "pos4"]


def test_receipt_and_points() -> None:
    r = mapping.receipt_of(cheque(paid_by_bonus="30.99"), MSK, store_id="", pv=100)
    assert (r.register_id, r.receipt_number, r.store_id, r.redeem_points) == (
        "SHOP1/POS1",
        "42@2026-03-14",
        "SHOP1",
        30,
    )
    assert r.customer is not None and (r.customer.kind, r.customer.value) == (IdKind.CARD, e.CARD)
    assert mapping.receipt_of(cheque(paid_by_bonus="30"), MSK, store_id="S9", pv=1000).redeem_points == 3


def test_track2_and_phone_customers() -> None:
    assert mapping.customer_of(wire.Card("Track2", ";2000012345=2512?")) is not None
    assert mapping.customer_of(wire.Card("Track2", ";2000012345=2512?")).value == "2000012345"  # type: ignore[union-attr]
    phone = mapping.customer_of(wire.Card("MobilePhone", "+7 912 345-67-89"))
    assert phone is not None and phone.kind == IdKind.PHONE
    with pytest.raises(BadInput):
        mapping.customer_of(wire.Card("MobilePhone", "call me"))


def test_events_of_each_operation() -> None:
    sale = mapping.sale_of(cheque(paid_by_bonus="10"), MSK, store_id="", pv=100)
    assert (sale.kind, sale.expected_redeemed) == (EventKind.SALE, 10)
    whole = mapping.refund_of(
        cheque(op="Return", number="43", reference=e.reference(), items=()), MSK, store_id="", pv=100
    )
    assert whole.refund_full and whole.receipt is None and whole.sale_key == sale.key
    cancel = mapping.cancel_of(cheque(op="Rollback", reference=e.reference(), items=()), sale.key)
    assert cancel.kind == EventKind.CANCEL and cancel.key == "onec:rollback:" + sale.key
    with pytest.raises(BadInput, match="required"):
        mapping.refund_of(cheque(op="Return"), MSK, store_id="", pv=100)


def test_soft_answer_spreads_exactly() -> None:
    c = cheque("Soft", paid_by_bonus="10")
    r = mapping.receipt_of(c, MSK, store_id="", pv=100)
    result = calc_result(
        r,
        {"MILK": 333, "BREAD": 667},
        redeemed_points=10,
        points_to_accrue=7,
        max_points=11,
        balance=50,
        tier="Gold",
    )
    a = mapping.soft_answer(c, r, result, tx=1, now=NOW, pv=100)
    assert (a.writeoff, a.available, a.charged, a.card_balance, a.level_name) == (
        1000,
        1100,
        700,
        5000,
        "Gold",
    )
    assert [i.writeoff for i in a.items] == [333, 667] and sum(i.available for i in a.items) == 1100
    assert (a.summ, a.summ_discounted) == (c.summ, c.summ_discounted)  # echoed


def test_soft_answer_offline_unknown_and_none() -> None:
    c = cheque("Soft")
    r = mapping.receipt_of(c, MSK, store_id="", pv=100)
    offline = mapping.soft_answer(c, r, calc_result(r, offline=True, balance=None), tx=1, now=NOW, pv=100)
    assert (
        offline.return_code == 0 and offline.card_balance is None and offline.message == mapping.OFFLINE_TEXT
    )
    unknown = mapping.soft_answer(c, r, calc_result(r, customer_found=False), tx=1, now=NOW, pv=100)
    assert unknown.return_code == wire.UNKNOWN_CARD
    none = mapping.soft_answer(c, r, None, tx=1, now=NOW, pv=100)
    assert (none.return_code, none.writeoff, none.card_balance) == (0, 0, None)


def test_transaction_ids_are_stable_positive_and_distinct() -> None:
    a, b = mapping.transaction_id("k1"), mapping.transaction_id("k2")
    assert a == mapping.transaction_id("k1") and a != b and 0 < a < 2**63


def test_an_invalid_answer_names_the_field() -> None:
    a = mapping.invalid(
        "R",
        BadInput("must be positive", "ChequeRequest/Item[1]/Quantity"),
        tx=1,
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert a.return_code == wire.INVALID_FIELD and "Item[1]/Quantity" in a.message
