"""drivers.onec.wire: envelopes read leniently (tables of real-client shapes and hostile ones), answers
written strictly, remembered answers read back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from drivers.onec import wire
from gateway import fields
from gateway.errors import BadInput
from tests.drivers.onec import envelopes as e

MSK = ZoneInfo("Europe/Moscow")


def cheque_of(body: bytes) -> wire.Cheque:
    env = wire.parse_envelope(body, max_bytes=1 << 20)
    [(kind, el)] = env.requests
    assert kind == "ChequeRequest"
    return wire.read_cheque(el, MSK)


def test_a_cheque_is_read_with_every_field() -> None:
    c = cheque_of(e.envelope(e.cheque("Soft", paid_by_bonus="12,50", reference=e.reference("41"))))
    assert (c.soft, c.request_id, c.organization, c.business_unit, c.pos, c.number, c.operation) == (
        True,
        "R-1",
        "ORG",
        "SHOP1",
        "POS1",
        "42",
        "Sale",
    )
    assert c.when == datetime(2026, 3, 14, 9, tzinfo=UTC) and c.card == wire.Card("CardNumber", e.CARD)
    assert (c.summ, c.summ_discounted, c.paid_by_bonus, c.discount) == (17990, 17990, 1250, Decimal(0))
    assert [(i.position, i.article, i.price, i.qty_milli, i.summ, i.accrues) for i in c.items] == [
        (1, "MILK", 8990, 1000, 8990, True),
        (2, "BREAD", 4500, 2000, 9000, True),
    ]
    assert c.reference is not None and c.reference.number == "41"


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("1532.0", Decimal("1532.0")),
        ("1532,50", Decimal("1532.50")),
        ("1 532,50", Decimal("1532.50")),
        ("1\u00a0532.5", Decimal("1532.5")),
        ("0.30000000000000004", Decimal("0.30000000000000004")),
        ("0", Decimal(0)),
    ],
)
def test_numbers_as_clients_write_them(raw: str, value: Decimal) -> None:
    assert wire.number(raw, "x") == value


@pytest.mark.parametrize("raw", ["1,532.50", "1.2.3", "abc", "NaN", "Infinity", "1e999"])
def test_numbers_that_are_not(raw: str) -> None:
    with pytest.raises(BadInput):
        wire.number(raw, "x")


@pytest.mark.parametrize(
    ("raw", "when"),
    [
        ("2015-08-24T07:21:55+03:00", datetime(2015, 8, 24, 4, 21, 55, tzinfo=UTC)),
        ("2018-05-01T10:00:46.248Z", datetime(2018, 5, 1, 10, 0, 46, 248000, tzinfo=UTC)),
        ("2015-08-24T07:21:55", datetime(2015, 8, 24, 7, 21, 55, tzinfo=MSK)),  # no offset: the store's time
    ],
)
def test_date_times(raw: str, when: datetime) -> None:
    assert wire.moment(raw, "x", MSK) == when


def test_savon_order_lower_case_and_a_phone_card() -> None:
    body = (
        b'<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:tns="'
        + e.NS.encode()
        + b'"><env:Body><tns:ProcessRequest><tns:request><tns:BalanceRequest><tns:Card><tns:MobilePhone>'
        b"+73213213213</tns:MobilePhone></tns:Card><tns:RequestId>1234</tns:RequestId>"
        b"<tns:DateTime>2015-08-25T11:40:59+03:00</tns:DateTime><tns:pos>P</tns:pos></tns:BalanceRequest>"
        b"</tns:request></tns:ProcessRequest></env:Body></env:Envelope>"
    )
    env = wire.parse_envelope(body, max_bytes=1 << 20)
    b = wire.read_balance(env.requests[0][1], MSK)
    assert (b.request_id, b.pos, b.card) == ("1234", "P", wire.Card("MobilePhone", "+73213213213"))


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"<a/>", "Client"),
        (e.envelope(e.cheque()).replace(e.SOAP11.encode(), b"urn:x"), "VersionMismatch"),
        (e.MUST_UNDERSTAND, "MustUnderstand"),
        (e.envelope(), "Client"),
        (e.envelope(e.cheque(), ns="urn:x"), "Client"),
        (e.envelope(e.cheque().replace("ChequeRequest", "BonusRequest")), "Client"),
        (e.BILLION_LAUGHS, "Client"),
        (e.EXTERNAL_ENTITY, "Client"),
        (e.DEEP, "Client"),
        (e.INVALID_UTF8, "Client"),
        (b"", "Client"),
    ],
)
def test_unreadable_envelopes_are_faults(body: bytes, code: str) -> None:
    with pytest.raises(wire.EnvelopeFault) as info:
        wire.parse_envelope(body, max_bytes=1 << 20)
    assert info.value.faultcode == code


def test_soap12_is_noted_and_several_requests_kept_in_order() -> None:
    env = wire.parse_envelope(e.envelope(e.balance(), e.cheque(), soap=e.SOAP12), max_bytes=1 << 20)
    assert env.soap12 and [k for k, _ in env.requests] == ["BalanceRequest", "ChequeRequest"]
    assert env.org_name == "ORG"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda s: s.replace('ChequeType="Fiscal"', 'ChequeType="Draft"'), "ChequeRequest/@ChequeType"),
        (
            lambda s: s.replace("<Quantity>1</Quantity>", "<Quantity>0</Quantity>"),
            "ChequeRequest/Item[1]/Quantity",
        ),
        (lambda s: s.replace("<Price>89.90</Price>", "<Price>-1</Price>"), "ChequeRequest/Item[1]/Price"),
        (lambda s: s.replace("<PositionNumber>2<", "<PositionNumber>1<"), "ChequeRequest/Item"),
        (lambda s: s.replace("<POS>POS1</POS>", "<POS>1</POS><POS>2</POS>"), "ChequeRequest/POS"),
        (lambda s: s.replace(e.WHEN, "yesterday"), "ChequeRequest/DateTime"),
    ],
)
def test_wrong_fields_name_their_element(change: object, field: str) -> None:
    body = e.envelope(change(e.cheque()))  # type: ignore[operator]
    with pytest.raises(BadInput) as info:
        cheque_of(body)
    assert info.value.field == field and not isinstance(info.value, wire.EnvelopeFault)


ANSWER = wire.ChequeAnswer(
    transaction_id=7,
    request_id="R<1>",
    processed=datetime(2026, 3, 14, 12, 5, 0, 123000, tzinfo=timezone(timedelta(hours=3))),
    return_code=0,
    message="OK & \x01",
    card_number="2000",
    card_balance=12345,
    level_name="Gold",
    summ=17990,
    discount=Decimal("2.5"),
    summ_discounted=17990,
    charged=500,
    available=6000,
    writeoff=3000,
    items=(wire.ItemAnswer(1, "MILK", 8990, 1500, 8990, Decimal(0), 8990, 2998, 3000),),
)


def test_answers_are_strict_in_schema_order_and_escaped() -> None:
    out = wire.render([ANSWER]).decode()
    assert out.startswith('<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="' + e.SOAP11)
    order = [
        "TransactionID",
        "RequestID",
        "Processed",
        "ReturnCode",
        "Message",
        "CardNumber",
        "CardBalance",
        "CardActiveBalance",
        "LevelName",
        "Summ",
        "Discount",
        "SummDiscounted",
        "ChargedBonus",
        "AvailablePayment",
        "WriteoffBonus",
        "Item",
    ]
    positions = [out.index(f"<{tag}>") for tag in order]
    assert positions == sorted(positions)
    assert "<RequestID>R&lt;1&gt;</RequestID>" in out and "<Message>OK &amp; \ufffd</Message>" in out
    assert "<Processed>2026-03-14T12:05:00.123</Processed>" in out and "<Discount>2.500</Discount>" in out
    assert "<Quantity>1.500</Quantity>" in out and "<CardBalance>123.45</CardBalance>" in out


def test_remembered_answers_round_trip() -> None:
    assert wire.load_answer(wire.dump_answer(ANSWER)) == ANSWER
    with pytest.raises(ValueError):
        wire.load_answer('{"x": 1}')


def test_faults_in_both_versions() -> None:
    one = wire.fault("Client", "плохо", error="BAD_INPUT", field="Envelope").decode()
    assert (
        "<faultcode>soap:Client</faultcode><faultstring>плохо</faultstring>" in one
        and "<Field>Envelope" in one
    )
    two = wire.fault("Client", "плохо", error="BAD_INPUT", soap12=True).decode()
    assert "<soap:Value>soap:Sender</soap:Value>" in two and e.SOAP12 in two


@pytest.mark.parametrize(("raw", "kop", "milli"), [
    ("1532", 153200, 1532000), ("1532.5", 153250, 1532500), ("0.305", 31, 305), ("0.3049", 30, 305),
    ("2.0005", 200, 2001), ("0.300000000004", 30, 300),
])
def test_plain_decimals_scale_half_up_like_the_slow_path(raw: str, kop: int, milli: int) -> None:
    assert wire._scaled(raw, 2) == kop == fields.kopecks(raw, "x")
    assert wire._scaled(raw, 3) == milli == fields.milli(raw, "x")
    assert wire._scaled("1,5", 2) is None and wire._scaled("-1", 2) is None and wire._scaled("1e3", 2) is None
