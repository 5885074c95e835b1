"""drivers.modulkassa.mapping: loyalty-request -> Receipt, CalcResult -> impacts (final unit prices,
split so piece goods pay exactly), closed / cancelled checks -> events keyed by the check id, lines
merged by product identity; fuzzing through parse and map."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modulkassa import mapping, wire
from gateway.driver import CalcClaims
from gateway.errors import BadInput
from gateway.receipt import CustomerId, EventKind, IdKind
from tests.drivers.fake_context import calc_result
from tests.drivers.modulkassa.test_wire import NOW, closed, json_values, operation, req, vendor

# ------------------------------------------------------------------ vendor example


def test_vendor_fn_document_parses_as_a_check_shaped_sale() -> None:
    # Partner -> cloud, not sent to us, but the same Check shape: numeric vatTag, docType, checkoutDateTime.
    check = wire.parse_check(json.loads(vendor("fn-doc-request.json"), parse_float=Decimal), "check")
    event = mapping.event_of(
        wire.CheckEvent(wire.CLOSED, check.check_id, 20000, check, wire.Loyalty()), None, now=NOW
    )
    assert not isinstance(event, str) and event.kind is EventKind.SALE and event.receipt is not None
    assert event.key == "modulkassa:check:4f4c789c-3863-41d3-aea9-c35b5a9e7f18"
    assert [(ln.line_id, ln.amount, ln.qty_milli) for ln in event.receipt.lines] == [
        ("b:123456789", 10000, 1000),
        ("c:GOOD-124", 10000, 1000),
    ]
    assert event.receipt.occurred_at == datetime(2020, 2, 25, 23, 41, 4, tzinfo=UTC)


# ------------------------------------------------------------------ calc: tables


def test_request_to_receipt() -> None:
    receipt = mapping.calc_receipt(req(), now=NOW)
    assert [(ln.line_id, ln.price, ln.qty_milli, ln.amount) for ln in receipt.lines] == [
        ("p1", 15000, 3000, 45000),
        ("p2", 64000, 350, 22400),
    ]
    assert receipt.customer == CustomerId(IdKind.CARD, "2000012345") and receipt.document_id == "a3f9c2d1"


@pytest.mark.parametrize(
    ("measure", "price", "qty", "paid", "groups"),
    [
        ("PCS", 10000, 3000, 29000, [(9667, 2000), (9666, 1000)]),  # 10.00 off 3 x 100.00: exact by splitting
        ("PCS", 15000, 3000, 30000, [(10000, 3000)]),  # divides evenly: one impact
        ("PCS", 15000, 3000, 45000, [(15000, 3000)]),  # no discount: identity
        ("PCS", 10000, 3000, 1, [(1, 1000), (0, 2000)]),
        ("PCS", 10000, 3000, 0, [(0, 3000)]),
        ("KG", 64000, 350, 21280, [(60800, 350)]),  # 5 % off cheese: one impact, 608.00
        ("KG", 99999, 333, 33000, [(99099, 333)]),  # weight: nearest unit price, may drift a kopeck
    ],
)
def test_line_splitting(measure: str, price: int, qty: int, paid: int, groups: list[tuple[int, int]]) -> None:
    pos = wire.MkPosition("p", "", "", "x", "INVENTORY", measure, price, qty, False)
    assert mapping.split(pos, paid) == groups
    if pos.piece:
        assert sum(mapping.line_amount(u, q) for u, q in groups) == paid  # exact to the kopeck


def test_answer_with_discounts_splits_and_validates() -> None:
    request = req()
    receipt = mapping.calc_receipt(request, now=NOW)
    result = calc_result(
        receipt, {"p1": 1000, "p2": 1120}, redeemed_points=21, points_to_accrue=17, hold_id="h-9",
        token="c1.the-calc-token",
    )
    ans = mapping.answer(request, receipt, result)
    assert mapping.problems(request, ans) == []
    out = json.loads(wire.render_succeeded(ans))
    assert out["result"] == "succeeded"
    data = out["data"]
    assert data["impacts"] == ["i1", "i2", "i3"]
    assert [
        (data[f"impact/{i}/position_id"], data[f"impact/{i}/price"], data[f"impact/{i}/quantity"])
        for i in data["impacts"]
    ] == [("p1", "146.67", "2"), ("p1", "146.66", "1"), ("p2", "608.00", "0.350")]
    assert data["data"] == "c1.the-calc-token"  # the calc token, echoed back by the plugin
    assert data["printable_data"].startswith("Карта *2345\nСписано баллов: 21")
    assert data["request_type"] == "LOYALTY"


def test_identity_answers_for_no_customer_returns_and_offline_without_customer() -> None:
    request = req(operation(card=""))
    ans = mapping.identity_answer(request)
    out = json.loads(wire.render_succeeded(ans))["data"]
    assert "printable_data" not in out and "data" not in out  # never a blank printable_data
    assert [out[f"impact/{i}/price"] for i in out["impacts"]] == ["150.00", "640.00"]
    assert mapping.refuse_if_return(req(operation(docType="return")))


def test_offline_prints_pending_balance() -> None:
    request = req()
    receipt = mapping.calc_receipt(request, now=NOW)
    ans = mapping.answer(request, receipt, calc_result(receipt, offline=True, balance=None))
    assert ans.printable.endswith("Баланс: обновится позже")


def test_problems_catches_every_rule() -> None:
    request = req()
    bad = wire.LoyaltyAnswer(
        impacts=(
            wire.Impact("i1", "p1", -1, 1500, True),
            wire.Impact("i1", "zz", 0, 1000, True),
            wire.Impact("i3", "p2", 0, 100, False),
        ),
        data="x" * 32001,
    )
    found = " | ".join(mapping.problems(request, bad))
    for text in ("not unique", "unknown position", "negative price", "fraction", "do not add up", "32000"):
        assert text in found


# ------------------------------------------------------------------ commits


def test_closed_sale_merges_split_lines_and_carries_the_calc_token() -> None:
    event = mapping.event_of(wire.parse_event(json.dumps(closed(data="c1.tok.mac")).encode()), None, now=NOW)
    assert not isinstance(event, str) and event.receipt is not None
    assert event.key == "modulkassa:check:chk-1" and event.calc_token == "c1.tok.mac"
    old_blob = json.dumps({"card": "2000012345", "kind": "card", "calc": "h-9", "pts": 21})
    from_old = mapping.event_of(wire.parse_event(json.dumps(closed(data=old_blob)).encode()), None, now=NOW)
    assert not isinstance(from_old, str) and from_old.calc_token == ""  # an older gateway's blob: ignored
    assert [(ln.line_id, ln.qty_milli, ln.amount) for ln in event.receipt.lines] == [
        ("c:CF-03", 3000, 45000),
        ("c:CH-11", 350, 22400),
    ]
    assert event.receipt.shift == "31" and event.receipt.receipt_number == "88"


def test_return_refunds_per_line_against_the_named_sale() -> None:
    event = mapping.event_of(
        wire.parse_event(json.dumps(closed("RETURN", check_id="ret-1", saleCheckId="chk-1")).encode()),
        None, now=NOW,
    )
    assert not isinstance(event, str)
    assert event.kind is EventKind.REFUND and event.sale_key == "modulkassa:check:chk-1"
    assert [(r.line_id, r.qty_milli) for r in event.refund_lines] == [("c:CF-03", 3000), ("c:CH-11", 350)]


def test_cancelled_and_modified_checks() -> None:
    cancel = {
        "action": wire.CANCELLED,
        "extras": {"check_id": "chk-2", "check_sum": "0"},
        "loyalty": {"data": "c1.tok.mac"},
    }
    held = CalcClaims(customer=None, redeemed=0, discount=0, hold_id="h-1", offline=False,
                      program_version="", register_id="")
    event = mapping.event_of(wire.parse_event(json.dumps(cancel).encode()), held, now=NOW)
    assert not isinstance(event, str) and event.kind is EventKind.CANCEL and event.calc_token == "c1.tok.mac"
    cancel["loyalty"] = {}
    assert (
        mapping.event_of(wire.parse_event(json.dumps(cancel).encode()), None, now=NOW)
        == "cancelled check held no points"
    )
    modified = {"action": wire.MODIFIED, "extras": {"check_id": "c"}}
    assert isinstance(mapping.event_of(wire.parse_event(json.dumps(modified).encode()), None, now=NOW), str)


# ------------------------------------------------------------------ small functions


@pytest.mark.parametrize(("code", "barcode", "name", "key"), [
    ("CF-03", "4601", "Coffee", "c:CF-03"), ("", "4601", "Coffee", "b:4601"), ("", "", "Coffee", "n:Coffee"),
    ("", "", "", "n:"),
])
def test_identity(code: str, barcode: str, name: str, key: str) -> None:
    assert mapping.identity(code, barcode, name) == key


@pytest.mark.parametrize(("data", "token"), [
    ("c1.abc.mac", "c1.abc.mac"), ("", ""), ('{"card": "1"}', ""), ("c2.abc", ""), ("C1.abc", ""),
])
def test_token_of(data: str, token: str) -> None:
    assert mapping.token_of(wire.Loyalty(data=data)) == token


def test_check_key() -> None:
    assert mapping.check_key("chk-1") == "modulkassa:check:chk-1"
    assert len(mapping.check_key("x" * 255)) == 64  # hashed beyond 200 characters


@pytest.mark.parametrize(("doc_type", "refused"), [
    ("RETURN", True), ("SALE_RETURN_CORRECTION", True), ("SALE", False), ("", False),
    ("SALE_CORRECTION", False),
])
def test_refuse_if_return(doc_type: str, refused: bool) -> None:
    assert mapping.refuse_if_return(req(operation(docType=doc_type))) is refused


def test_calc_receipt_register_store_and_customer() -> None:
    r = mapping.calc_receipt(req(operation(device="dev-9", phone="+79991234567", card="", redeem="max")),
                             now=NOW, store_id="S1")
    assert (r.register_id, r.store_id, r.cashier_id, r.driver) == ("dev-9", "S1", "u-0012", "modulkassa")
    assert (r.redeem_max, r.occurred_at, r.receipt_number) == (True, NOW, "")
    assert r.customer is not None and r.customer.kind is IdKind.PHONE
    payload = operation()
    payload["data"]["retail_point_id"] = ""
    bare = mapping.calc_receipt(req(payload), now=NOW)
    assert (bare.register_id, bare.store_id) == ("modulkassa", "")


def test_calc_receipt_needs_positions() -> None:
    with pytest.raises(BadInput, match="at least one line"):
        payload = operation()
        payload["data"]["positions"] = []
        mapping.calc_receipt(req(payload), now=NOW)


@pytest.mark.parametrize(("doc_type", "reason"), [
    ("SALE_CORRECTION", "SALE_CORRECTION checks carry no loyalty"),
    ("SALE_RETURN_CORRECTION", "SALE_RETURN_CORRECTION checks carry no loyalty"),
])
def test_corrections_are_ignored_with_the_reason(doc_type: str, reason: str) -> None:
    ev = wire.parse_event(json.dumps(closed(doc_type)).encode())
    assert mapping.event_of(ev, None, now=NOW) == reason


def test_main_screen_and_modified_broadcasts_are_ignored() -> None:
    for action in (wire.MODIFIED, wire.MAIN_SCREEN):
        ev = wire.parse_event(json.dumps({"action": action, "extras": {"check_id": "c"}}).encode())
        assert mapping.event_of(ev, None, now=NOW) == "broadcast carries no sale or return"


def test_cancel_key_and_register() -> None:
    held = CalcClaims(customer=None, redeemed=0, discount=0, hold_id="h-1", offline=False,
                      program_version="", register_id="")
    cancel = {"action": wire.CANCELLED, "extras": {"check_id": "chk-2"}, "loyalty": {"device": "dev-3"}}
    event = mapping.event_of(wire.parse_event(json.dumps(cancel).encode()), held, now=NOW)
    assert not isinstance(event, str)
    assert (event.key, event.register_id, event.occurred_at, event.calc_token) == (
        "modulkassa:cancel:chk-2", "dev-3", NOW, "")


def test_return_without_the_sale_id_has_no_sale_key() -> None:
    body = json.dumps(closed("RETURN", check_id="r-2")).encode()
    event = mapping.event_of(wire.parse_event(body), None, now=NOW)
    assert not isinstance(event, str)
    assert (event.kind, event.key, event.sale_key, event.refund_amount) == (
        EventKind.REFUND, "modulkassa:check:r-2", "", 45000 + 22400)


def _only_bad_input(body: bytes) -> None:
    for parse in (wire.parse_operation, wire.parse_event):
        try:
            out = parse(body)
            if isinstance(out, wire.LoyaltyRequest):
                receipt = mapping.calc_receipt(out, now=NOW)
                mapping.answer(
                    out, receipt, calc_result(receipt, {ln.line_id: ln.amount // 3 for ln in receipt.lines})
                )
            else:
                mapping.event_of(out, None, now=NOW)
        except BadInput:
            pass


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_fuzz_parsers(body: bytes) -> None:
    _only_bad_input(body)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["op", "event"]),
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "request_id",
                    "positions",
                    "position/p1/price",
                    "position/p2/quantity",
                    "position/p1/measure",
                    "check",
                    "check_id",
                    "loyalty",
                    "redeem",
                    "card",
                    "data",
                    "check_sum",
                ]
            ),
            json_values,
        ),
        max_size=4,
    ),
)
def test_fuzz_mutated_real_payloads(which: str, edits: list[tuple[str, object]]) -> None:
    payload = operation() if which == "op" else closed(data="{}")
    for key, value in edits:
        for node in (payload, payload.get("data", {}), payload.get("extras", {}), payload.get("loyalty", {})):
            if isinstance(node, dict) and key in node:
                node[key] = value
    _only_bad_input(json.dumps(payload).encode())


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["PCS", "KG"]), st.integers(0, 10**6), st.integers(1, 20)),
        min_size=1,
        max_size=5,
    ),
    st.data(),
)
def test_any_discount_gives_a_valid_answer_exact_for_piece_goods(
    lines: list[tuple[str, int, int]], data: st.DataObject
) -> None:
    positions = [
        (f"p{i}", m, wire.rubles(price), str(units) if m == "PCS" else f"0.{units:03d}")
        for i, (m, price, units) in enumerate(lines)
    ]
    request = req(operation(positions))
    receipt = mapping.calc_receipt(request, now=NOW)
    discounts = {ln.line_id: data.draw(st.integers(0, ln.amount)) for ln in receipt.lines}
    ans = mapping.answer(request, receipt, calc_result(receipt, discounts))
    assert mapping.problems(request, ans) == []
    for pos in request.positions:
        paid = sum(
            mapping.line_amount(i.price, i.qty_milli) for i in ans.impacts if i.position_id == pos.position_id
        )
        if pos.piece:
            assert paid == mapping.line_amount(pos.price, pos.qty_milli) - discounts[pos.position_id]
