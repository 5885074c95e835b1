"""gateway.convert: canonical model <-> protobuf."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.convert import (
    calculation_to_result,
    event_to_envelope,
    receipt_to_draft,
)
from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.receipt import (
    CustomerId,
    Event,
    EventKind,
    IdKind,
    RefundLine,
    sale_event,
)
from tests.gateway.receipt_fixtures import MSK, make_receipt


def test_receipt_to_draft_maps_every_field() -> None:
    d = receipt_to_draft(make_receipt())
    assert d.customer.WhichOneof("id") == "phone"
    assert (d.customer.phone, d.customer.otp) == ("+79991234567", "1234")
    assert [x.line_id for x in d.lines] == ["1", "2"]
    l1, l2 = d.lines
    assert (l1.qty_milli, l1.price, l1.amount, l1.category) == (2000, 8990, 17980, "dairy")
    # optional flags are set only when False; unset means true on the wire
    assert not l1.HasField("discountable") and not l1.HasField("accruable")
    assert not l1.HasField("min_unit_price")
    assert l2.HasField("discountable") and l2.discountable is False
    assert l2.HasField("accruable") and l2.accruable is False
    assert l2.min_unit_price == 12000
    assert d.occurred_at.ToDatetime(tzinfo=UTC) == datetime(2025, 3, 9, 9, 30, 15, 123456, tzinfo=UTC)
    assert (d.staff.store_id, d.staff.cashier_id, d.staff.cashier_name) == ("S1", "c1", "Анна")
    assert (d.register_id, d.receipt_number, d.channel) == ("R1", "42", "native")
    assert (d.redeem_points, d.redeem_max, d.total) == (100, False, 32980)


@pytest.mark.parametrize("kind", list(IdKind))
def test_customer_ref_kinds(kind: IdKind) -> None:
    d = receipt_to_draft(make_receipt(customer=CustomerId(kind, "X1")))
    assert d.customer.WhichOneof("id") == kind.value
    assert getattr(d.customer, kind.value) == "X1"


def test_no_customer_leaves_ref_unset() -> None:
    assert not receipt_to_draft(make_receipt(customer=None)).HasField("customer")


def test_sale_envelope() -> None:
    r = make_receipt()
    e = Event(EventKind.SALE, "K1", "R1", r.occurred_at, receipt=r, offline=True, hold_id="h1",
              expected_redeemed=100)
    env = event_to_envelope(e, 7)
    assert (env.event_id, env.register_id, env.register_seq) == ("K1", "R1", 7)
    assert env.WhichOneof("body") == "commit"
    c = env.commit
    assert (c.idempotency_key, c.hold_id, c.offline) == ("K1", "h1", True)
    assert c.HasField("expected") and c.expected.redeemed_points == 100
    assert c.draft == receipt_to_draft(r)


def test_sale_without_expected_leaves_it_unset() -> None:
    e = sale_event(make_receipt())
    assert not event_to_envelope(e, 1).commit.HasField("expected")
    assert event_to_envelope(e, 1).commit.idempotency_key == e.key


def test_sale_expected_zero_is_still_sent() -> None:
    r = make_receipt()
    e = Event(EventKind.SALE, "K", "R1", r.occurred_at, receipt=r, expected_redeemed=0)
    env = event_to_envelope(e, 1)
    assert env.commit.HasField("expected") and env.commit.expected.redeemed_points == 0


def test_sale_without_receipt_refused() -> None:
    with pytest.raises(ValueError, match="no receipt"):
        event_to_envelope(Event(EventKind.SALE, "K", "R1", datetime.now(UTC)), 1)


def test_refund_envelope() -> None:
    at = datetime(2025, 3, 10, 10, 0, tzinfo=MSK)
    e = Event(EventKind.REFUND, "RF1", "R1", at, sale_key="K1",
              refund_lines=(RefundLine("1", 1000), RefundLine("2", 500)), cashier_id="c2", cashier_name="Bob")
    env = event_to_envelope(e, 3)
    assert env.WhichOneof("body") == "refund"
    rf = env.refund
    assert rf.refund_key == "RF1"
    assert rf.sale.WhichOneof("ref") == "sale_key" and rf.sale.sale_key == "K1"
    assert [(x.line_id, x.qty_milli) for x in rf.lines] == [("1", 1000), ("2", 500)]
    assert (rf.full, rf.amount, rf.register_id) == (False, 0, "R1")
    assert rf.occurred_at.ToDatetime(tzinfo=UTC) == at
    assert (rf.staff.cashier_id, rf.staff.cashier_name) == ("c2", "Bob")


def test_full_and_amount_refund() -> None:
    at = datetime(2025, 3, 10, tzinfo=UTC)
    env = event_to_envelope(Event(EventKind.REFUND, "a", "R1", at, sale_key="K", refund_full=True), 1)
    assert env.refund.full
    env = event_to_envelope(Event(EventKind.REFUND, "b", "R1", at, sale_key="K", refund_amount=5000), 1)
    assert env.refund.amount == 5000 and not env.refund.full


def test_cancel_envelope_sale_and_hold() -> None:
    at = datetime(2025, 3, 10, tzinfo=UTC)
    env = event_to_envelope(Event(EventKind.CANCEL, "C1", "R1", at, sale_key="K1"), 2)
    assert env.WhichOneof("body") == "cancel"
    assert (env.cancel.cancel_key, env.cancel.sale.sale_key, env.cancel.hold_id) == ("C1", "K1", "")
    env = event_to_envelope(Event(EventKind.CANCEL, "C2", "R1", at, hold_id="h9"), 2)
    assert not env.cancel.HasField("sale") and env.cancel.hold_id == "h9"


def test_calculation_to_result() -> None:
    c = pb.Calculation(
        customer_id="cu1", display_name="Анна К.", tier="gold", max_points=300, limited_by="tier_cap",
        redeemed_certificate=50, redeemed_ordinary=100, payable=31480, points_to_accrue=31,
        balance_before=1000, balance_after=881, hold_id="h1",
        lines=[pb.LineResult(line_id="1", discount=150, paid=17830, accrues=True),
               pb.LineResult(line_id="2", discount=0, paid=15000, accrues=False)],
        applied_rules=[pb.AppliedRule(rule_id="t", amount=31, reason="Статус 3 %"),
                       pb.AppliedRule(rule_id="c", amount=0, reason="")],
    )
    res = calculation_to_result(c, offline=False)
    assert [(x.line_id, x.discount, x.paid, x.accrues) for x in res.lines] == [
        ("1", 150, 17830, True), ("2", 0, 15000, False)]
    assert (res.redeemed_points, res.points_to_accrue, res.max_points, res.payable) == (150, 31, 300, 31480)
    assert res.customer_found and res.customer_id == "cu1" and res.display_name == "Анна К."
    assert (res.tier, res.balance, res.hold_id, res.limited_by) == ("gold", 1000, "h1", "tier_cap")
    assert res.message == "Статус 3 %" and not res.offline and res.total_discount == 150
    off = calculation_to_result(c, offline=True)
    assert off.offline and off.balance is None
    assert calculation_to_result(pb.Calculation(offline=True), offline=False).offline


def test_unknown_customer_result() -> None:
    res = calculation_to_result(pb.Calculation(payable=100), offline=False)
    assert not res.customer_found and res.balance is None
