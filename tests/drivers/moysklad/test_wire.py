"""drivers.moysklad.wire: MoySklad's bodies as the protocol notes show them, their quirks, hostile input."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.moysklad import wire
from gateway.errors import BadInput
from tests.drivers.moysklad import payloads as p


def test_recalc_reads_positions_in_kopecks_and_thousandths() -> None:
    req = wire.parse_recalc(p.dumps(p.recalc()))
    assert req.store == p.STORE_ID and req.agent.ms_id == p.AGENT_ID and req.agent.phone == p.PHONE
    assert [(x.quantity, x.price) for x in req.positions] == [(2000, 50000), (1000, 25000)]
    assert not req.spending and req.preferred is None


@pytest.mark.parametrize(
    ("body", "preferred"),
    [
        (p.recalc(spending=True, preferred=125), 125),
        (p.recalc(spending=True, preferred=125, where="program"), 125),  # Q1: read inside bonusProgram too
        (p.recalc(spending=True, where="null"), None),  # null: the maximum
        (p.recalc(spending=True), None),
        (p.recalc(spending=True, preferred="40"), 40),
    ],
)
def test_preference_at_top_level_inside_or_null(body: dict[str, Any], preferred: int | None) -> None:
    req = wire.parse_recalc(p.dumps(body))
    assert req.spending and req.preferred == preferred


def test_sale_reads_points_gift_cards_and_empty_metas() -> None:
    body = p.sale("", spend=125, earn=56, giftCards=[{"id": "g", "name": "GC-1", "paymentSum": 100000}])
    doc = wire.parse_sale(p.dumps(body))
    assert doc.doc_id == "" and doc.name == "00042" and doc.moment == "2025-08-01 14:05:31"
    assert (doc.spend, doc.earn, doc.cash) == (125, 56, 125000)
    assert doc.gift_cards == (wire.GiftPayment("g", "GC-1", 100000),)
    assert doc.positions[0].discounted == 50000


@pytest.mark.parametrize(
    "agent_body",
    [
        {"href": "h", "id": p.AGENT_ID},  # Q2: flat
        {"meta": {"href": "h", "id": p.AGENT_ID}},
    ],
)
def test_return_agent_flat_or_wrapped_and_kopeck_no_cash_sum(agent_body: dict[str, Any]) -> None:
    doc = wire.parse_return(p.dumps(p.sales_return(agent=agent_body, noCashSum=283100.0)))
    assert doc.agent is not None and doc.agent.ms_id == p.AGENT_ID
    assert doc.demand_id and doc.no_cash == 283100  # Q3: a return's noCashSum is kopecks already


def test_return_with_empty_agent_has_none() -> None:
    assert wire.parse_return(p.dumps(p.sales_return(agent={}))).agent is None


def test_registration_code_takes_the_sync_id_from_the_posap_href() -> None:
    body = {
        "meta": {"href": "https://api.moysklad.ru/api/posap/1.0/entity/counterparty/syncid/abc-123"},
        "phone": "+7 555 123 4567",
        "birthDate": "1992-08-01 00:00:00.000",
    }  # no retailStore, as documented
    ask = wire.parse_registration_code(p.dumps(body))
    assert ask.counterparty == "abc-123" and ask.phone == "+7 555 123 4567"


@pytest.mark.parametrize(
    ("parse", "body", "field"),
    [
        (wire.parse_recalc, b"[1]", "body"),
        (wire.parse_recalc, {**p.recalc(), "positions": [p.position("a", 0, 1)]}, "positions[0].quantity"),
        (wire.parse_recalc, {**p.recalc(), "positions": [p.position("a", 1, -1)]}, "positions[0].price"),
        (wire.parse_recalc, {**p.recalc(), "positions": [p.position("a", 1, "1e300")]}, "positions[0].price"),
        (
            wire.parse_recalc,
            {**p.recalc(), "bonusProgram": {"transactionType": "STEALING"}},
            "bonusProgram.transactionType",
        ),
        (wire.parse_recalc, p.recalc(spending=True, preferred=1.5), "preferredBonusToSpend"),
        (
            wire.parse_registration_code,
            {"meta": {"href": "h/syncid/x"}, "phone": "call me"},
            "phone",
        ),
        (wire.parse_sale, p.sale(spend=-1), "bonusProgram.bonusValueToSpend"),
        (
            wire.parse_sale,
            p.sale(giftCards=[{"id": "g", "name": "n", "paymentSum": -5}]),
            "giftCards[0].paymentSum",
        ),
        (wire.parse_create, {**p.create(), "meta": {"id": ""}}, "meta.id"),
        (wire.parse_create, {**p.create(), "statusCheck": "MAYBE"}, "body.statusCheck"),
        (wire.parse_spending_code, {"retailStore": p.store()}, "counterpartyId"),
    ],
)
def test_bad_input_names_the_field(parse: Any, body: Any, field: str) -> None:
    with pytest.raises(BadInput) as info:
        parse(p.dumps(body))
    assert info.value.field == field


def test_a_phone_that_is_not_one_reads_as_none_in_a_recalc() -> None:
    req = wire.parse_recalc(
        p.dumps({**p.recalc(), "agent": {"meta": {"id": "x"}, "phone": "+7 903 доб. 12"}})
    )
    assert req.agent.ms_id == "x" and req.agent.phone == ""


def test_errors_body_shape() -> None:
    body = json.loads(wire.render_errors("Ошибка", "Текст", code=28001, parameter="phone"))
    assert body == {
        "errors": [{"error": "Ошибка", "code": 28001, "error_message": "Текст", "parameter": "phone"}]
    }


def test_recalc_answer_numbers_and_balance_after() -> None:
    pos = wire.Position("a", "h", 3000, 10000)
    priced = (
        wire.PricedPosition(pos, 2000, 9667, Decimal("3.33")),
        wire.PricedPosition(pos, 1000, 9666, Decimal("3.34")),
    )
    ans = wire.RecalcAnswer(priced, True, 500, 10, 5, 1000, "x", True)
    body = json.loads(wire.render_recalc({"meta": {"id": "m"}}, ans))
    assert body["positions"][0] == {
        "assortment": {"meta": {"href": "h", "id": "a"}},
        "quantity": 2,
        "price": 100,
        "discountPercent": 3.33,
        "discountedPrice": 96.67,
    }
    program = body["bonusProgram"]
    assert (program["agentBonusBalanceAfter"], program["paidByBonusPoints"]) == (495, 10)
    assert body["needVerification"] is True and body["agent"] == {"meta": {"id": "m"}}


def test_gift_card_answer_is_numbers() -> None:
    body = json.loads(wire.render_gift_card("G", "id", "PARTIALLY_REDEEMED", "", 500, 1000))
    assert body == {
        "name": "G",
        "id": "id",
        "status": "PARTIALLY_REDEEMED",
        "initialBalance": 1000,
        "currentBalance": 500,
    }


# ---------------------------------------------------------------- hostile input: BadInput and nothing else

PARSERS: dict[str, tuple[Any, Any]] = {
    "recalc": (wire.parse_recalc, p.recalc(spending=True, preferred=5)),
    "sale": (wire.parse_sale, p.sale(spend=5, giftCards=[{"id": "g", "name": "n", "paymentSum": 5}])),
    "return": (wire.parse_return, p.sales_return()),
    "create": (wire.parse_create, p.create()),
    "detail": (wire.parse_detail, p.detail()),
    "registration_code": (wire.parse_registration_code, {"meta": {"href": "h/syncid/x"}, "phone": p.PHONE}),
    "spending_code": (
        wire.parse_spending_code,
        {"retailStore": p.store(), "counterpartyId": "c", "phone": p.PHONE},
    ),
}
HOSTILE: list[Any] = [None, -1, 10**30, "1e400", "NaN", "x" * 5000, [], {}, "\x00\u202e", True, 1.5, [[[[]]]]]


def _paths(tree: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [at]
    if isinstance(tree, dict):
        for k, v in tree.items():
            out += _paths(v, (*at, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out += _paths(v, (*at, i))
    return out


def _replaced(tree: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = dict(tree) if isinstance(tree, dict) else list(tree)
    copy[path[0]] = _replaced(tree[path[0]], path[1:], value)  # type: ignore[index]
    return copy


def _only_bad_input(parse: Any, raw: bytes) -> None:
    try:
        parse(raw)
    except BadInput:
        pass


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_a_hostile_value_anywhere_is_bad_input_or_read(name: str) -> None:
    parse, good = PARSERS[name]
    for path in _paths(good):
        for value in HOSTILE:
            _only_bad_input(parse, p.dumps(_replaced(good, path, value)))
    for raw in (b"", b"\xff\xfe", b"[" * 100_000, b'{"a":' * 1000, b"null", b'"x"', b"1e999"):
        _only_bad_input(parse, raw)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(sorted(PARSERS)),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda kids: (
            st.lists(kids, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "retailStore",
                        "meta",
                        "id",
                        "agent",
                        "positions",
                        "assortment",
                        "quantity",
                        "price",
                        "bonusProgram",
                        "phone",
                        "counterpartyId",
                        "giftCards",
                        "paymentSum",
                        "demand",
                        "href",
                    ]
                ),
                kids,
                max_size=5,
            )
        ),
        max_leaves=30,
    ),
)
def test_random_bodies_are_bad_input_or_read(name: str, body: Any) -> None:
    _only_bad_input(PARSERS[name][0], json.dumps(body).encode())
