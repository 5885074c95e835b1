"""drivers.moysklad.mapping: final per-unit prices (split positions, to the kopeck), keys, events, returns."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.moysklad import mapping, wire
from gateway.driver import CalcLine, CalcResult
from gateway.errors import BadInput
from gateway.fields import line_amount
from gateway.receipt import CustomerId, EventKind, IdKind
from tests.drivers.moysklad import payloads as p

NOW = datetime(2025, 8, 1, 12, 0, tzinfo=UTC)


def pos(qty: int, price: int, sn: tuple[str, ...] = ()) -> wire.Position:
    return wire.Position("a", "h", qty, price, sn=sn)


def test_the_protocol_notes_split_example() -> None:
    """3 x 100.00 spending 10 points: 2 @ 96.67 and 1 @ 96.66, payable 290.00."""
    priced = mapping.price([pos(3000, 10000)], [1000])
    assert [(x.quantity, x.discounted, x.percent) for x in priced] == [
        (2000, 9667, Decimal("3.33")),
        (1000, 9666, Decimal("3.34")),
    ]
    assert mapping.payable(priced) == 29000


def test_serial_numbers_are_divided_by_quantity() -> None:
    priced = mapping.price([pos(3000, 10000, ("s1", "s2", "s3"))], [1000])
    assert [x.sn for x in priced] == [("s1", "s2"), ("s3",)]


def test_weight_goods_carry_their_fraction_to_a_piece_position() -> None:
    positions = [pos(1234, 9999), pos(2000, 5000)]
    discounts = [777, 300]
    priced = mapping.price(positions, discounts)
    gross = sum(line_amount(x.price, x.quantity) for x in positions)
    assert mapping.payable(priced) == gross - sum(discounts)
    assert priced[0].quantity == 1234  # a weight position is never split


def _carry_room(positions: list[wire.Position]) -> int:
    """The most the weight positions can leave unpaid: a kopeck per started kilogram each."""
    return sum(-(-x.quantity // 1000) for x in positions if x.quantity % 1000)


@st.composite
def baskets(draw: st.DrawFn) -> tuple[list[wire.Position], list[int]]:
    n = draw(st.integers(1, 8))
    positions: list[wire.Position] = []
    for _ in range(n):
        weight = draw(st.booleans()) and positions  # the first position is a piece position
        qty = draw(st.integers(1, 5000)) if weight else draw(st.integers(1, 50)) * 1000
        positions.append(pos(qty, draw(st.integers(0, 10_000_00))))
    amounts = [line_amount(x.price, x.quantity) for x in positions]
    discounts = [draw(st.integers(0, a)) for a in amounts]
    discounts[0] = max(discounts[0], min(amounts[0], _carry_room(positions)))  # room to carry fractions
    return positions, discounts


@settings(max_examples=300, deadline=None)
@given(baskets())
def test_discounted_price_times_quantity_sums_to_the_payable_total(
    basket: tuple[list[wire.Position], list[int]],
) -> None:
    positions, discounts = basket
    priced = mapping.price(positions, discounts)
    gross = sum(line_amount(x.price, x.quantity) for x in positions)
    room = _carry_room(positions)
    if discounts[0] >= room:
        assert mapping.payable(priced) == gross - sum(discounts)
    else:  # nothing can carry the fractions: the till pays less, by under a kopeck per started kilogram
        assert 0 <= gross - sum(discounts) - mapping.payable(priced) < max(room, 1)
    for source in positions:  # parts add up to the position, adjacent, never negative, percent in range
        parts = [x for x in priced if x.source is source]
        assert sum(x.quantity for x in parts) == source.quantity and len(parts) <= 2
        assert all(0 <= x.discounted <= source.price and Decimal(0) <= x.percent <= 100 for x in parts)


def _result(discounts: dict[str, int], redeemed: int, earn: int) -> CalcResult:
    lines = tuple(CalcLine(k, d, 0, True) for k, d in discounts.items())
    return CalcResult(
        lines=lines,
        redeemed_points=redeemed,
        points_to_accrue=earn,
        max_points=redeemed,
        payable=0,
        offline=False,
        customer_found=True,
        balance=500,
    )


def test_recalc_answer_spreads_the_core_discount_and_sums_points() -> None:
    req = wire.parse_recalc(p.dumps(p.recalc(spending=True, preferred=125)))
    ans = mapping.recalc_answer(req, _result({"p0": 10000, "p1": 2500}, 125, 56), balance=500, need_code=True)
    assert [(x.quantity, x.discounted) for x in ans.positions] == [(2000, 45000), (1000, 22500)]
    assert (ans.spend, ans.earn, ans.paid_by_points, ans.need_code) == (125, 56, 12500, True)


def test_no_loyalty_answer_keeps_prices() -> None:
    req = wire.parse_recalc(p.dumps(p.recalc(spending=True)))
    ans = mapping.recalc_answer(req, None, balance=0, need_code=True)
    assert [x.discounted for x in ans.positions] == [50000, 25000]
    assert (ans.spend, ans.paid_by_points, ans.need_code) == (0, 0, False)


def test_keys_use_the_document_id_or_the_documented_fallback() -> None:
    assert mapping.document_key("demand", wire.parse_sale(p.dumps(p.sale("d-1")))) == "moysklad:demand:d-1"
    fallback = mapping.document_key("demand", wire.parse_sale(p.dumps(p.sale(""))))
    assert fallback == f"moysklad:demand:{p.STORE_ID}:00042:2025-08-01 14:05:31"
    with pytest.raises(BadInput):
        mapping.document_key("demand", wire.parse_sale(p.dumps(p.sale("", name="", moment=""))))


def test_digest_sees_points_and_goods_not_cash() -> None:
    base = wire.parse_sale(p.dumps(p.sale()))
    assert mapping.digest(base) == mapping.digest(wire.parse_sale(p.dumps(p.sale(cashSum=1.0))))
    assert mapping.digest(base) != mapping.digest(wire.parse_sale(p.dumps(p.sale(spend=5))))


def test_sale_event_merges_split_parts_and_expects_the_points() -> None:
    parts = [
        p.position("x", 2, 100.00, discountedPrice=96.67),
        p.position("x", 1, 100.00, discountedPrice=96.66),
    ]
    doc = wire.parse_sale(p.dumps(p.sale(pos=parts, spend=10)))
    who = CustomerId(IdKind.PHONE, p.PHONE, otp="1234")
    event = mapping.sale_of(doc, who, key="k", now=NOW)
    assert event.receipt is not None
    assert [(x.line_id, x.qty_milli, x.amount) for x in event.receipt.lines] == [("x", 3000, 30000)]
    assert (event.receipt.redeem_points, event.expected_redeemed) == (10, 10)
    assert event.receipt.occurred_at == datetime(2025, 8, 1, 11, 5, 31, tzinfo=UTC)  # Moscow time


def test_returns_are_capped_at_what_the_sale_has_left() -> None:
    sold = mapping.goods(wire.parse_sale(p.dumps(p.sale())).positions)
    ret = wire.parse_return(
        p.dumps(p.sales_return(pos=[p.position("2e3d4c5b-0b6c-11ef-0a80-0d6e00998877", 3, 250.00)]))
    )
    key = "2e3d4c5b-0b6c-11ef-0a80-0d6e00998877"
    assert mapping.returned_lines(ret, sold, {}) == {key: 1000}
    assert mapping.returned_lines(ret, sold, {key: 1000}) == {}
    event = mapping.refund_of(ret, "moysklad:demand:x", {key: 1000}, key="r", now=NOW)
    assert event.kind == EventKind.REFUND and event.sale_key == "moysklad:demand:x"
    assert mapping.Goods.from_json(sold.as_json()) == sold


def test_moment_is_moscow_time_and_checked() -> None:
    assert mapping.moment("", NOW) == NOW
    with pytest.raises(BadInput):
        mapping.moment("yesterday", NOW)


@pytest.mark.parametrize("phone", ["+7 903 123-45-67", "89031234567", "9031234567", "+7(903)1234567"])
def test_phone_key_is_one_spelling(phone: str) -> None:
    assert mapping.phone_key(phone) == "79031234567"


def test_calc_key_names_a_recalc_and_the_sale_of_its_goods_alike() -> None:
    """The sale carries the recalc's answer: split parts, discounted prices, no idType, the agent
    without its phone; the key is the same. Other goods, customer or store: another key."""
    asked = [p.position("x", 3, 100.00), p.position("y", 1, 5)]
    recalc = wire.parse_recalc(p.dumps(p.recalc(positions=asked)))
    split = [
        p.position("y", 1, 5, discountedPrice=5),
        p.position("x", 2, 100.00, discountedPrice=96.67),
        p.position("x", 1, 100.00, discountedPrice=96.66),
    ]
    sale = wire.parse_sale(p.dumps(p.sale(pos=split, spend=10)))
    key = mapping.calc_key(recalc.store, recalc.agent, recalc.positions)
    assert key.startswith("calc:") and key == mapping.calc_key(sale.store, sale.agent, sale.positions)
    others = [
        mapping.calc_key(sale.store, sale.agent, sale.positions[:2]),
        mapping.calc_key(sale.store, wire.Agent(ms_id="someone-else"), sale.positions),
        mapping.calc_key("another-store", sale.agent, sale.positions),
    ]
    assert key not in others and len(set(others)) == 3
    assert mapping.calc_key(sale.store, None, sale.positions) == ""
    assert mapping.calc_key(sale.store, wire.Agent(), sale.positions) == ""


@pytest.mark.parametrize(
    ("redeemed", "spend", "chosen"),
    [
        ([125, 125], 125, 1),  # two recalcs allowed the same: the newest first, the other for the next sale
        ([125, 50], 125, 0),  # the recalc whose spending the sale carries, even when another is newer
        ([50, 125, 50], 50, 2),  # of several that match, the last (a reopened receipt's last recalc wins)
        ([200, 125, 80], 100, 1),  # none matches: the newest that allowed at least as much
        ([125, 50], 130, 1),  # none allowed that much: the newest (the sale is refused against it)
        ([125, None], 0, 0),  # spending nothing: a token that does not verify is never chosen
        ([None, None], 0, None),
        ([], 10, None),
    ],
)
def test_pick_chooses_the_recalc_the_sale_applied(
    redeemed: list[int | None], spend: int, chosen: int | None
) -> None:
    assert mapping.pick(redeemed, spend) == chosen


def test_kept_tokens_are_bounded_oldest_dropped_and_read_back() -> None:
    tokens = [f"t{i}" for i in range(mapping.CALC_TOKENS_KEPT + 3)]
    value = mapping.kept_tokens(tokens)
    assert mapping.calc_tokens(value) == tokens[3:]  # the newest CALC_TOKENS_KEPT, oldest first
    assert mapping.kept_tokens([]) == "" and mapping.calc_tokens("") == mapping.calc_tokens(None) == []


def test_a_value_written_before_lists_is_one_token_and_garbage_is_none() -> None:
    assert mapping.calc_tokens("c1.abc.def") == ["c1.abc.def"]
    assert mapping.calc_tokens("[not json") == [] and mapping.calc_tokens('["a", 3, "", null]') == ["a"]
    assert mapping.calc_tokens('["a"') == [] and mapping.calc_tokens("[1]") == []
