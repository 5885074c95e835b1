"""drivers.poster.mapping: orders -> receipts (lines merged per product + modification, money in
kopecks), the calc answer as one bonus capped by the order total, the calc token in the order's
extras, keys of sales, partial returns and removed-transaction webhooks."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from drivers.poster import mapping, wire
from drivers.poster.wire import Loyalty, Order, PosEvent, Product, Returned, Settings, Webhook
from gateway.driver import CalcLine, CalcResult
from gateway.errors import BadInput
from gateway.receipt import CustomerId, EventKind, IdKind, Line
from gateway.slip import slip_text
from tests.drivers.poster import payloads as p

NOW = datetime(2026, 1, 1, 10, tzinfo=UTC)
SETTINGS = Settings("acc", "1", "3")


def envelope(event: str, data: Any) -> bytes:
    return json.dumps({"event": event, "settings": p.settings(), "data": data}).encode()


def order(*products: Product, total: int = 0, extras: dict[str, object] | None = None, date_close: int = 0,
          order_id: str = "1767254400123") -> Order:
    return Order(order_id, "", 1, date_close, "", products, total, 0, extras or {})


def pos(o: Order | None, *, settings: Settings = SETTINGS, loyalty: Loyalty | None = None,
        returned: tuple[Returned, ...] = ()) -> PosEvent:
    return PosEvent("beforeOrderClose", settings, loyalty or Loyalty(), o, returned)


def result(discounts: tuple[int, ...] = (), *, found: bool = True, token: str = "c1.t") -> CalcResult:
    lines = tuple(CalcLine(f"p{i}", d, 1000, True) for i, d in enumerate(discounts))
    return CalcResult(lines=lines, redeemed_points=0, points_to_accrue=0, max_points=0, payable=0,
                      offline=False, customer_found=found, balance=None, hold_id="", token=token)


# ------------------------------------------------------------------ tables


@pytest.mark.parametrize(
    ("price", "count", "unit", "qty", "amount"),
    [
        (85.5, 1, 8550, 1000, 8550),
        (0.2, 200, 20, 200_000, 4000),
        (190, 0.245, 19000, 245, 4655),
        (99.99, 3, 9999, 3000, 29997),
        (10.005, 1, 1001, 1000, 1001),
        ("12.50", "1.5", 1250, 1500, 1875),
    ],
)
def test_money_and_counts_to_kopecks_and_thousandths(
    price: Any, count: Any, unit: int, qty: int, amount: int
) -> None:
    order = p.order()
    order["products"] = {"0": {"id": 1, "count": count, "price": price}}
    receipt = mapping.calc_receipt(
        wire.parse_pos_event(envelope("beforeOrderClose", {"order": order})), now=NOW
    )
    assert [(x.price, x.qty_milli, x.amount) for x in receipt.lines] == [(unit, qty, amount)]


def test_bonus_answer_is_the_discount_capped_by_the_total_with_text_and_extras() -> None:
    ev = wire.parse_pos_event(p.before_close(redeem=120))
    receipt = mapping.calc_receipt(ev, now=NOW)
    assert receipt.redeem_points == 120 and receipt.customer is not None
    result = CalcResult(
        lines=(CalcLine("p12", 9000, 29000, True), CalcLine("p40", 3000, 5550, True)),
        redeemed_points=120,
        points_to_accrue=17,
        max_points=200,
        payable=34550,
        offline=False,
        customer_found=True,
        balance=380,
        hold_id="h-1",
        token="c1.the-calc-token",
    )
    assert ev.order is not None
    bonus = mapping.bonus_of(result, ev.order)
    body = json.loads(
        wire.render_bonus(
            bonus,
            slip_text(receipt.customer, result, print_balance=True),
            mapping.calc_extras(result),
        )
    )
    assert body["bonus"] == 120.0 and wire.render_bonus(bonus).startswith(b'{"bonus":120.00')
    assert body["printText"] == "Карта *2345\nСписано баллов: 120\nНачислено баллов: 17\nБаланс: 380"
    assert body["extras"] == {"posgw": "c1.the-calc-token"}  # the calc token, back on afterOrderClose
    assert wire.render_bonus(0) == b'{"bonus":0.00}'


def test_sale_carries_the_calc_token_and_keeps_its_key_after_sync() -> None:
    extras = {"posgw": "c1.tok.mac"}
    first = mapping.sale_of(
        wire.parse_pos_event(p.pos_event("afterOrderClose", {"order": p.order(extras=extras)})), now=NOW
    )
    synced = mapping.sale_of(
        wire.parse_pos_event(
            p.pos_event("afterOrderClose", {"order": p.order(extras=extras, name=58031)}, card=None)
        ),
        now=NOW,
    )
    assert first.key == synced.key == "poster:coffee-demo:3:order:1767254400123"
    assert first.calc_token == synced.calc_token == "c1.tok.mac"  # the pipeline applies customer and points


def test_partial_returns_have_their_own_keys_and_resends_the_same() -> None:
    one, same, two = (mapping.refund_of(wire.parse_pos_event(p.return_fiscal(n)), now=NOW) for n in (1, 1, 2))
    assert one.key == same.key != two.key
    assert [(x.line_id, x.qty_milli) for x in two.refund_lines] == [("p12", 2000)]


def test_removed_webhook_refunds_the_linked_sale_and_dedups_by_object_and_action() -> None:
    hook = wire.parse_webhook(json.dumps(p.webhook(time="1")).encode())
    later = wire.parse_webhook(json.dumps(p.webhook(time="2")).encode())
    a, b = mapping.webhook_event(hook, "poster:sale", now=NOW), mapping.webhook_event(later, None, now=NOW)
    assert not isinstance(a, str) and not isinstance(b, str)
    assert (
        a.key == b.key == "poster:coffee-demo:tx:58031:removed"
        and a.kind is EventKind.REFUND
        and a.refund_full
    )
    assert (a.sale_key, b.sale_key) == ("poster:sale", "poster:coffee-demo:tx:58031")


# ------------------------------------------------------------------ identity and keys


@pytest.mark.parametrize(("product", "modification", "line"), [
    ("12", "", "p12"),
    ("12", "3", "p12m3"),
    ("12", "[{\"m\":1,\"a\":1}]", "p12m" + hashlib.sha256(b'[{"m":1,"a":1}]').hexdigest()[:12]),
    ("12", "-1", "p12m" + hashlib.sha256(b"-1").hexdigest()[:12]),  # not all digits: hashed
])
def test_line_id(product: str, modification: str, line: str) -> None:
    assert mapping.line_id(product, modification) == line


@pytest.mark.parametrize(("settings", "register", "key"), [
    (Settings("acc", "1", "3"), "acc/1/3", "poster:acc:3:order:77"),
    (Settings("acc", "", ""), "acc/0/0", "poster:acc:0:order:77"),
])
def test_register_and_sale_key(settings: Settings, register: str, key: str) -> None:
    ev = pos(order(Product("1", "", 1000, 100)), settings=settings)
    assert mapping.register_of(ev) == register
    assert mapping.sale_key(ev, "77") == key


def test_tx_link() -> None:
    assert mapping.tx_link("acc", "58031") == "tx:acc:58031"


# ------------------------------------------------------------------ receipts


def test_lines_merge_per_product_and_modification_and_skip_zero_quantities() -> None:
    lines = mapping.lines_of((Product("12", "", 2000, 19000), Product("40", "2", 1000, 5550),
                              Product("12", "", 500, 19000), Product("12", "1", 1000, 20000),
                              Product("99", "", 0, 100)))
    assert lines == (Line("p12", "12", "product 12", 19000, 2500, 47500),
                     Line("p40m2", "40", "product 40", 5550, 1000, 5550),
                     Line("p12m1", "12", "product 12", 20000, 1000, 20000))


def test_a_merged_line_above_the_limit_is_bad_input() -> None:
    big = Product("1", "", 1_000_000, 10**10 + 1)  # 1000 x (10^10 + 1) kopecks: just above 10^13
    with pytest.raises(BadInput) as err:
        mapping.lines_of((big,))
    assert err.value.field == "data.order.products"


@pytest.mark.parametrize(("date_close", "when"), [
    (1767254400123, datetime(2026, 1, 1, 8, 0, 0, 123000, tzinfo=UTC)),
    (0, NOW),  # still open
    (1767254400, NOW),  # seconds, not ms: implausible, so now
    (10**14, NOW),
])
def test_receipt_time_from_the_close_ms(date_close: int, when: datetime) -> None:
    r = mapping.calc_receipt(pos(order(Product("1", "", 1000, 100), date_close=date_close)), now=NOW)
    assert r.occurred_at == when


def test_calc_receipt_fields() -> None:
    loyalty = Loyalty(card="2000012345", redeem_points=0, redeem_max=True)
    r = mapping.calc_receipt(pos(order(Product("1", "", 1000, 100)), loyalty=loyalty), now=NOW, store_id="S")
    assert (r.register_id, r.receipt_number, r.document_id, r.store_id, r.driver) == (
        "acc/1/3", "1767254400123", "1767254400123", "S", "poster")
    assert (r.customer, r.redeem_max) == (CustomerId(IdKind.CARD, "2000012345"), True)
    assert mapping.calc_receipt(pos(order(Product("1", "", 1000, 100))), now=NOW).store_id == "acc"


def test_preview_receipt_asks_for_no_redemption() -> None:
    loyalty = Loyalty(phone="+79160000101", redeem_points=120, redeem_max=True)
    r = mapping.preview_receipt(pos(order(Product("1", "", 1000, 100)), loyalty=loyalty), now=NOW)
    assert (r.customer, r.redeem_points, r.redeem_max) == (CustomerId(IdKind.PHONE, "+79160000101"), 0, False)


@pytest.mark.parametrize(("ev", "field", "message"), [
    (pos(None), "data.order", "is required"),
    (pos(order()), "data.order.products", "no products with a quantity"),
    (pos(order(Product("1", "", 0, 100))), "data.order.products", "no products with a quantity"),
])
def test_order_receipt_refusals(ev: PosEvent, field: str, message: str) -> None:
    with pytest.raises(BadInput, match=message) as err:
        mapping.calc_receipt(ev, now=NOW)
    assert err.value.field == field


# ------------------------------------------------------------------ calc answer


@pytest.mark.parametrize(("discounts", "total", "bonus"), [
    ((9000, 3000), 34550, 12000),
    ((9000, 3000), 10000, 10000),  # never above the order total
    ((9000,), 0, 9000),  # no total given: the discount
    ((), 5000, 0),
    ((0, 0), 100, 0),
])
def test_bonus_of(discounts: tuple[int, ...], total: int, bonus: int) -> None:
    assert mapping.bonus_of(result(discounts), order(total=total)) == bonus


def test_calc_extras_only_with_a_token_for_a_found_customer() -> None:
    assert mapping.calc_extras(result(token="c1.x")) == {"posgw": "c1.x"}
    assert mapping.calc_extras(result(token="")) == {}
    assert mapping.calc_extras(result(found=False, token="c1.x")) == {}


@pytest.mark.parametrize(("extras", "token"), [
    ({"posgw": "c1.x"}, "c1.x"), ({}, ""), ({"posgw": 5}, ""), ({"posgw": None}, ""), ({"other": "c1"}, ""),
])
def test_token_of(extras: dict[str, object], token: str) -> None:
    assert mapping.token_of(order(extras=extras)) == token


# ------------------------------------------------------------------ commits


def test_refund_lines_are_merged_and_sorted_and_the_key_names_them() -> None:
    returned = (Returned("40", "", 1000), Returned("12", "", 1000), Returned("12", "", 500),
                Returned("7", "", 0))
    ev = pos(order(Product("12", "", 2000, 100)), returned=returned)
    refund = mapping.refund_of(ev, now=NOW)
    assert [(r.line_id, r.qty_milli) for r in refund.refund_lines] == [("p12", 1500), ("p40", 1000)]
    digest = hashlib.sha256(b"p12x1500,p40x1000").hexdigest()[:16]
    assert refund.key == f"poster:acc:3:return:1767254400123:{digest}"
    assert (refund.kind, refund.sale_key, refund.register_id, refund.occurred_at) == (
        EventKind.REFUND, "poster:acc:3:order:1767254400123", "acc/1/3", NOW)
    reordered = pos(order(Product("12", "", 2000, 100)), returned=tuple(reversed(returned)))
    assert mapping.refund_of(reordered, now=NOW).key == refund.key  # the same return, resent


def test_refund_without_quantities_is_bad_input() -> None:
    with pytest.raises(BadInput, match="no returned product") as err:
        mapping.refund_of(pos(order(), returned=(Returned("1", "", 0),)), now=NOW)
    assert err.value.field == "data.products"


@pytest.mark.parametrize(("obj", "action", "reason"), [
    ("client", "removed", "client webhooks carry no receipt"),
    ("transaction", "added", "transaction added: the platform app reports the order itself"),
    ("transaction", "changed", "transaction changed: the platform app reports the order itself"),
])
def test_webhooks_that_carry_no_refund(obj: str, action: str, reason: str) -> None:
    hook = Webhook("acc", "7", obj, "58031", action, "1", "v", None)
    assert mapping.webhook_event(hook, "poster:sale", now=NOW) == reason


def test_removed_webhook_event_fields() -> None:
    event = mapping.webhook_event(Webhook("acc", "7", "transaction", "58031", "removed", "1", "v", None),
                                  None, now=NOW)
    assert not isinstance(event, str)
    assert (event.register_id, event.occurred_at, event.extra, event.refund_lines) == (
        "acc/webhook", NOW, (("poster_account_number", "7"),), ())
