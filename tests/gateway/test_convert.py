"""gateway.convert: canonical model <-> protobuf."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.convert import (
    calculation_to_result,
    customer_ref,
    envelope_body,
    event_to_envelope,
    frame_batch,
    frame_envelope,
    line_to_pb,
    receipt_to_draft,
    set_time,
    varint,
)
from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.receipt import (
    CustomerId,
    Event,
    EventKind,
    IdKind,
    Line,
    Receipt,
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


def test_a_contact_is_marked_if_known_in_the_draft() -> None:
    contact = CustomerId(IdKind.PHONE, "+7 495 123-45-67", if_known=True)
    assert receipt_to_draft(make_receipt(customer=contact)).customer.if_known
    assert customer_ref(contact).if_known and customer_ref(contact).phone == "+7 495 123-45-67"
    member = CustomerId(IdKind.PHONE, "+79161234567")
    assert not receipt_to_draft(make_receipt(customer=member)).customer.if_known


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
    c = pb.CalculateResponse(
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
    assert calculation_to_result(pb.CalculateResponse(offline=True), offline=False).offline


def test_unknown_customer_result() -> None:
    res = calculation_to_result(pb.CalculateResponse(payable=100), offline=False)
    assert not res.customer_found and res.balance is None


# ---------------------------------------------------------------- store what is sent: wire framing

_text = st.text(max_size=12)
_i64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_money = st.integers(min_value=-(2**40), max_value=2**40)  # (a receipt's total must fit in int64)
_when = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
_lines = st.lists(st.builds(
    Line, line_id=_text, sku=_text, name=_text, price=_money, qty_milli=_money, amount=_money, category=_text,
    discountable=st.booleans(), accruable=st.booleans(), min_unit_price=st.none() | _money), max_size=3)
_customer = st.builds(CustomerId, kind=st.sampled_from(list(IdKind)), value=_text, otp=_text)
_receipts = st.builds(
    Receipt, register_id=_text, receipt_number=_text, lines=_lines.map(tuple), occurred_at=_when,
    store_id=_text, cashier_id=_text, cashier_name=_text, customer=st.none() | _customer,
    redeem_points=_money, redeem_max=st.booleans(), driver=_text)
_common = {"key": _text, "register_id": _text, "occurred_at": _when, "sale_key": _text, "hold_id": _text,
           "cashier_id": _text, "cashier_name": _text, "offline": st.booleans()}
_events = st.one_of(
    st.builds(Event, kind=st.just(EventKind.SALE), receipt=_receipts,
              expected_redeemed=st.none() | _money, **_common),
    st.builds(Event, kind=st.just(EventKind.REFUND), receipt=st.none() | _receipts, refund_full=st.booleans(),
              refund_amount=_money, refund_lines=st.lists(st.builds(RefundLine, _text, _money), max_size=3)
              .map(tuple), **_common),
    st.builds(Event, kind=st.just(EventKind.CANCEL), receipt=st.none() | _receipts, **_common),
    st.builds(Event, kind=st.just(EventKind.CORRECTION),
              receipt=_receipts.filter(lambda r: r.customer is not None), **_common),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_events, _text, _i64), max_size=6))
def test_framed_stored_envelopes_are_the_event_batch_byte_for_byte(
    items: list[tuple[Event, str, int]],
) -> None:
    # what the sender writes (stored bodies, framed) == what the protobuf runtime writes for the batch
    expected = []
    for event, event_id, seq in items:
        env = event_to_envelope(event, seq)
        env.event_id = event_id  # the outbox row's key (a conflict row's differs from the event's)
        expected.append(env)
    framed = [frame_envelope(event_id, event.register_id, seq, envelope_body(event))
              for event, event_id, seq in items]
    data = frame_batch(framed)
    assert data == pb.StreamEventsRequest(events=expected).SerializeToString()
    assert list(pb.StreamEventsRequest.FromString(data).events) == expected


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 2**14 - 1, 2**14, 2**21 - 1, 2**21, 2**35, 2**63 - 1,
                               -1, -(2**63)])
def test_varint_is_the_protobuf_encoding(n: int) -> None:
    framed = frame_envelope("", "", n, b"")
    assert framed == pb.EventEnvelope(register_seq=n).SerializeToString()
    assert framed[1:] == varint(n) or n == 0


def test_an_event_the_core_could_never_accept_has_no_envelope_body() -> None:
    with pytest.raises(ValueError, match="carries no receipt"):
        envelope_body(Event(EventKind.SALE, "k", "R1", datetime(2025, 1, 1, tzinfo=UTC)))


def _draft_of_parts(r: Receipt) -> pb.ReceiptDraft:
    """The reference: a draft built of its parts and copied together (as convert did before it
    wrote drafts in place)."""
    staff = pb.Staff(store_id=r.store_id, terminal_id=r.register_id, cashier_id=r.cashier_id,
                     cashier_name=r.cashier_name)
    when = Timestamp()
    when.FromDatetime(r.occurred_at)
    draft = pb.ReceiptDraft(lines=[line_to_pb(x) for x in r.lines], redeem_points=r.redeem_points,
                            redeem_max=r.redeem_max, occurred_at=when, staff=staff, register_id=r.register_id,
                            receipt_number=r.receipt_number, total=r.total, channel=r.driver)
    if r.customer is not None:
        draft.customer.CopyFrom(customer_ref(r.customer))
    return draft


@settings(max_examples=150, deadline=None)
@given(_events)
def test_drafts_and_commits_written_in_place_are_the_messages_built_of_parts(event: Event) -> None:
    if event.receipt is not None:
        assert receipt_to_draft(event.receipt).SerializeToString() == _draft_of_parts(
            event.receipt).SerializeToString()
    if event.kind != EventKind.SALE:
        return
    assert event.receipt is not None
    commit = pb.CommitRequest(idempotency_key=event.key, draft=_draft_of_parts(event.receipt),
                              hold_id=event.hold_id, offline=event.offline)
    if event.expected_redeemed is not None:
        commit.expected.CopyFrom(pb.Expected(redeemed_points=event.expected_redeemed))
    assert envelope_body(event) == pb.EventEnvelope(commit=commit).SerializeToString()


_offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda m: timezone(timedelta(minutes=m)))


@settings(max_examples=300, deadline=None)
@given(st.datetimes(timezones=st.none() | st.just(UTC) | _offsets))
def test_set_time_writes_what_from_datetime_writes(when: datetime) -> None:
    # any instant from year 1 to 9999, any offset, naive (read as UTC), microseconds; at the
    # range's ends, where the UTC instant falls outside it, the same error as FromDatetime's
    expected, got = Timestamp(), Timestamp()
    try:
        expected.FromDatetime(when)
    except (ValueError, OverflowError) as exc:
        with pytest.raises(type(exc)):
            set_time(got, when)
        return
    set_time(got, when)
    assert (got.seconds, got.nanos) == (expected.seconds, expected.nanos)
    assert got.SerializeToString() == expected.SerializeToString()


@pytest.mark.parametrize("when", [datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
                                  datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-5)))])
def test_set_time_out_of_range_fails_as_from_datetime(when: datetime) -> None:
    with pytest.raises(OverflowError):
        Timestamp().FromDatetime(when)
    with pytest.raises(OverflowError):
        set_time(Timestamp(), when)
