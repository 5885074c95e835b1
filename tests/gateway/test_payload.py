"""gateway.payload: the exact JSON round trip of outbox events, and its bytes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import payload
from gateway.payload import event_from_json, event_to_json
from gateway.receipt import (
    CustomerId,
    Event,
    EventKind,
    IdKind,
    Line,
    Payment,
    Receipt,
    RefundLine,
)
from tests.gateway.receipt_fixtures import make_receipt


def test_json_round_trip_sale_exact() -> None:
    r = make_receipt(occurred_at=datetime(2025, 3, 9, 12, 0, 1, 5, tzinfo=ZoneInfo("Europe/Moscow")))
    e = Event(EventKind.SALE, "K1", "R1", r.occurred_at, receipt=r, offline=True, hold_id="h",
              expected_redeemed=0, extra=(("a", "b"), ("c", "д")))
    raw = event_to_json(e)
    data = json.loads(raw)
    assert data["v"] == 1 and data["occurred_at"].endswith("+03:00")
    back = event_from_json(raw)
    assert back == e
    assert back.occurred_at.utcoffset() == timedelta(hours=3)
    assert event_to_json(back) == raw


def test_json_round_trip_refund() -> None:
    e = Event(EventKind.REFUND, "RF", "R2", datetime(2025, 1, 1, tzinfo=UTC), sale_key="K",
              refund_lines=(RefundLine("1", 500),), refund_amount=7, refund_full=False)
    assert event_from_json(event_to_json(e)) == e


def test_json_refuses_unknown_version_and_naive_times() -> None:
    raw = json.loads(event_to_json(Event(EventKind.CANCEL, "C", "R", datetime(2025, 1, 1, tzinfo=UTC))))
    raw["v"] = 2
    with pytest.raises(ValueError, match="version"):
        event_from_json(json.dumps(raw))
    with pytest.raises(ValueError, match="offset"):
        event_to_json(Event(EventKind.CANCEL, "C", "R", datetime(2025, 1, 1)))
    raw["v"] = 1
    raw["occurred_at"] = "2025-01-01T00:00:00"
    with pytest.raises(ValueError, match="offset"):
        event_from_json(json.dumps(raw))


text = st.text(max_size=8)
ints = st.integers(min_value=0, max_value=10**13)
offsets = st.integers(min_value=-12 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
times = st.builds(
    lambda d, tz: d.replace(tzinfo=tz),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
    offsets,
)
lines = st.builds(Line, text, text, text, ints, ints, ints, text, st.booleans(), st.booleans(),
                  st.none() | ints)
receipts = st.builds(
    Receipt, text, text, st.lists(lines, max_size=3).map(tuple), times, text, text, text, text, text, text,
    st.none() | st.builds(CustomerId, st.sampled_from(list(IdKind)), text, text, st.booleans()), ints,
    st.booleans(),
    st.lists(st.builds(Payment, text, ints), max_size=2).map(tuple), text,
)
events = st.builds(
    Event, st.sampled_from(list(EventKind)), text, text, times, st.none() | receipts, text,
    st.lists(st.builds(RefundLine, text, ints), max_size=3).map(tuple), st.booleans(), ints,
    st.booleans(), text, st.none() | ints, text, text, st.lists(st.tuples(text, text), max_size=2).map(tuple),
)


@settings(max_examples=150, deadline=None)
@given(events)
def test_json_round_trip_property(e: Event) -> None:
    raw = event_to_json(e)
    assert event_from_json(raw) == e
    assert event_to_json(event_from_json(raw)) == raw


@settings(max_examples=150, deadline=None)
@given(events)
def test_json_payload_bytes_do_not_depend_on_orjson(e: Event) -> None:
    """The outbox compares payload bytes to tell a resend from a conflict: with or without orjson
    the same event must give the same bytes (compact, key-sorted JSON as the stdlib writes it)."""
    expected = json.dumps(json.loads(event_to_json(e)), ensure_ascii=False, sort_keys=True,
                          separators=(",", ":")).encode()
    assert event_to_json(e) == expected
    assert payload._dumps_stdlib(payload.event_to_dict(e)) == expected


DAY = timedelta(hours=23, minutes=59)
any_offsets = st.timedeltas(min_value=-DAY, max_value=DAY)  # seconds and microseconds included
zones = st.sampled_from([UTC, *(ZoneInfo(name) for name in (
    "Europe/Moscow", "Asia/Kolkata", "America/St_Johns", "Europe/Amsterdam"))]) | any_offsets.map(timezone)


@settings(max_examples=400, deadline=None)
@given(st.datetimes(min_value=datetime(1850, 1, 1), max_value=datetime(2200, 1, 1)), zones, st.booleans())
def test_times_are_written_as_isoformat_writes_them(
    naive: datetime, zone: timezone | ZoneInfo, fold: bool,
) -> None:
    """A payload's times are ``isoformat`` text whichever writer wrote them (orjson's for offsets
    of whole minutes, ``isoformat`` itself for the rest, such as Amsterdam's +00:19:32 of 1900)."""
    when = naive.replace(tzinfo=zone, fold=int(fold))
    assert payload._dt(when) == when.isoformat()


def test_times_without_orjson_are_written_by_isoformat(monkeypatch: pytest.MonkeyPatch) -> None:
    when = datetime(2026, 3, 1, 9, 30, 0, 120, tzinfo=timezone(timedelta(hours=3)))
    e = Event(EventKind.REFUND, "RF", "R2", when, sale_key="K", refund_lines=(RefundLine("1", 500),))
    with_orjson = event_to_json(e)
    monkeypatch.setattr(payload, "_rfc3339", None)
    monkeypatch.setattr(payload, "_dumps", payload._dumps_stdlib)
    assert event_to_json(e) == with_orjson
    assert b'"occurred_at":"2026-03-01T09:30:00.000120+03:00"' in with_orjson
    with pytest.raises(ValueError, match="UTC offset"):
        payload._dt(when.replace(tzinfo=None))


def test_payload_bytes_are_the_stored_format() -> None:
    """Files written by earlier versions hold exactly these bytes; a resend is compared to them."""
    e = Event(EventKind.REFUND, "RF", "R2", datetime(2025, 1, 1, tzinfo=UTC), sale_key="K",
              refund_lines=(RefundLine("1", 500),))
    assert event_to_json(e) == (
        b'{"cashier_id":"","cashier_name":"","expected_redeemed":null,"extra":[],"hold_id":"",'
        b'"key":"RF","kind":"refund","occurred_at":"2025-01-01T00:00:00+00:00","offline":false,'
        b'"receipt":null,"refund_amount":0,"refund_full":false,'
        b'"refund_lines":[{"line_id":"1","qty_milli":500}],"register_id":"R2","sale_key":"K","v":1}'
    )


def test_a_contact_flag_round_trips_and_leaves_older_payloads_byte_equal() -> None:
    """CustomerId.if_known is written only when set: a payload stored before the flag existed
    reads back equal and is written again byte for byte (the outbox compares bytes)."""
    def make_event(customer: CustomerId) -> Event:
        r = make_receipt(customer=customer)
        return Event(EventKind.SALE, "K1", "R1", r.occurred_at, receipt=r)

    sale = make_event(customer=CustomerId(IdKind.PHONE, "+7 495 123-45-67", if_known=True))
    raw = event_to_json(sale)
    assert b'"if_known":true' in raw and event_from_json(raw) == sale
    plain = make_event(customer=CustomerId(IdKind.PHONE, "+7 495 123-45-67"))
    assert b"if_known" not in event_to_json(plain)
    assert event_from_json(event_to_json(plain)).receipt.customer.if_known is False  # type: ignore[union-attr]
