"""drivers.moysklad.driver: every endpoint over a real socket with FakeContext and a fake core desk."""

# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest

from drivers.moysklad import mapping, wire
from drivers.moysklad.driver import check, create, customer_uuid
from gateway.driver import CustomerInfo
from gateway.errors import CoreUnavailable, StorageError
from gateway.pipeline import apply_claims
from gateway.receipt import CustomerId, IdKind, Receipt
from gateway.rules.identity import normalize_phone
from tests.drivers.fake_context import FakeContext, MemoryState, calc_result, serve, token
from tests.drivers.moysklad import payloads as p

GIFT = {"name": "GC-1", "id": "gid", "initial_kopecks": 100000}
P1 = "1d2c3b4a-0b6c-11ef-0a80-0d6e00778899"
P2 = "2e3d4c5b-0b6c-11ef-0a80-0d6e00998877"


@dataclass
class Sent:
    code: str
    status: str = "sent"
    retry_after_s: int = 60


@dataclass
class FakeDesk:
    registered: list[dict[str, Any]] = field(default_factory=list)
    codes: list[tuple[str, str]] = field(default_factory=list)
    status: str = "sent"
    slow: bool = False

    async def register_customer(self, **kw: Any) -> str:
        self.registered.append(kw)
        return "42"

    async def send_code(self, phone: str, *, purpose: str, wait_ms: int, timeout: float) -> Sent:
        if self.slow:
            raise CoreUnavailable("deadline exceeded")
        self.codes.append((phone, purpose))
        return Sent("4821" if self.status == "sent" else "", self.status)


def context(desk: FakeDesk | None = None) -> FakeContext:
    ctx = FakeContext("moysklad")
    if desk is not None:
        ctx.desk = desk  # type: ignore[attr-defined]
    ctx.known[p.PHONE] = CustomerInfo("7", "Анна П.", "base", 500, offline=False)
    ctx.known["7"] = ctx.known[p.PHONE]

    async def identify(who: CustomerId) -> CustomerInfo | None:  # a phone normalised as the core does
        value = who.value
        if who.kind is IdKind.PHONE:
            try:
                value = normalize_phone(who.value)
            except ValueError:
                return None
        return ctx.known.get(value)

    ctx.identify = identify  # type: ignore[method-assign]

    def calc(r: Receipt) -> Any:  # the core spreads what is redeemed: 10 % each line, earns 5 %
        spend = 125 if (r.redeem_max or r.redeem_points >= 125) else r.redeem_points
        share = {"p0": spend * 100 * 1000 // 1250, "p1": spend * 100 * 250 // 1250} if spend else {}
        hold = "hold-7" if spend else ""
        return calc_result(
            r,
            share,
            redeemed_points=spend,
            points_to_accrue=56,
            max_points=125,
            balance=500,
            hold_id=hold,
            token=token(customer=r.customer, redeemed=spend, hold_id=hold, register_id=r.register_id),
        )

    ctx.calc = calc
    return ctx


def driver(**options: Any) -> Any:
    return create({"tokens": [p.TOKEN], "gift_cards": [GIFT], **options})


async def call(
    ctx: FakeContext, path: str, body: Any = None, method: str = "POST", **options: Any
) -> tuple[int, Any]:
    async with serve(driver(**options), ctx) as client:
        resp = await client.request(
            method, f"/v1/moysklad{path}", data=None if body is None else p.dumps(body), headers=p.HEADERS
        )
        raw = await resp.read()
        return resp.status, json.loads(raw) if raw else None


async def calls(ctx: FakeContext, *steps: tuple[str, Any], **options: Any) -> list[tuple[int, Any]]:
    out = []
    async with serve(driver(**options), ctx) as client:
        for path, body in steps:
            method = "GET" if body is None else "POST"
            resp = await client.request(
                method, f"/v1/moysklad{path}", data=None if body is None else p.dumps(body), headers=p.HEADERS
            )
            raw = await resp.read()
            out.append((resp.status, json.loads(raw) if raw else None))
    return out


async def test_unchecked_customer_is_asked_for_a_code_then_registered_when_checked() -> None:
    desk = FakeDesk()
    ctx = context(desk)
    [asked, code, made] = await calls(
        ctx,
        ("/counterparty", p.create("UNCHECKED")),
        (
            "/counterparty/verify",
            {
                "retailStore": p.store(),
                "meta": {"href": "https://x/posap/1.0/entity/counterparty/syncid/s1"},
                "phone": "+7 903 765-43-21",
            },
        ),
        ("/counterparty", p.create("CHECKED")),
    )
    assert asked[0] == 412 and asked[1]["errors"][0]["code"] == 28001
    assert code == (
        200,
        {
            "verificationCode": "4821",
            "timeForRepeat": 60,
            "messageForCashier": "Код отправлен в SMS на *4321",
        },
    )
    assert made == (201, None)
    assert desk.registered[0]["phone"] == "+7 903 765-43-21" and desk.codes == [
        ("+7 903 765-43-21", "registration")
    ]
    assert json.loads(ctx.state.data["link:0aa1b2c3-0b6b-11ef-0a80-0d6e00001111"])["cid"] == "42"


async def test_without_a_desk_registration_and_codes_are_refused_clearly() -> None:
    ctx = context(None)
    status, body = await call(ctx, "/counterparty", p.create("CHECKED"))
    assert status == 503 and "зарегистрировать" in body["errors"][0]["error_message"]
    status, body = await call(
        ctx, "/retaildemand/verify", {"retailStore": p.store(), "counterpartyId": "c", "phone": p.PHONE}
    )
    assert status == 503 and body["errors"][0]["error_message"]


async def test_search_and_balance() -> None:
    ctx = context()
    [found, none, bal, unknown] = await calls(
        ctx,
        (f"/counterparty?search=9031234567&retailStoreId={p.STORE_ID}", None),
        (f"/counterparty?search=0000&retailStoreId={p.STORE_ID}", None),
        ("/counterparty/detail", p.detail()),
        ("/counterparty/detail", p.detail("other", "+79990000000")),
    )
    assert found == (200, {"rows": [{"id": customer_uuid("7"), "name": "Анна П.", "phone": "+79031234567"}]})
    assert none == (200, {"rows": []})
    assert bal == (200, {"bonusProgram": {"agentBonusBalance": 500}})
    assert unknown[0] == 404 and unknown[1]["errors"][0]["error_message"]


async def test_spending_day_recalc_code_sale() -> None:
    desk = FakeDesk()
    ctx = context(desk)
    [recalc, code, sale] = await calls(
        ctx,
        ("/retaildemand/recalc", p.recalc(spending=True)),
        # the card's phone written another way than the agent's: the same phone
        (
            "/retaildemand/verify",
            {"retailStore": p.store(), "counterpartyId": "c", "phone": "8 (903) 123-45-67"},
        ),
        ("/retaildemand", p.sale(spend=125, earn=56)),
    )
    assert recalc[0] == 200 and recalc[1]["needVerification"] is True
    program = recalc[1]["bonusProgram"]
    assert (
        program["bonusValueToSpend"],
        program["agentBonusBalanceAfter"],
        program["paidByBonusPoints"],
    ) == (125, 431, 125)
    assert [x["discountedPrice"] for x in recalc[1]["positions"]] == [450, 225]
    assert code[0] == 200 and sale == (201, None)
    [event] = ctx.stored.values()
    # the sale carries its recalc's calc token and names the customer that recalc priced for, so the
    # pipeline applies the token (no "sale names another customer than its calc")
    claims = ctx.calc_claims(event.calc_token)
    assert event.receipt is not None and event.receipt.customer == claims.customer
    assert claims.customer == CustomerId(IdKind.CUSTOMER_ID, "7") and claims.redeemed == 125
    assert event.expected_redeemed == 125 and event.hold_id == ""  # nothing copied by the driver
    applied = apply_claims(event, claims)
    assert (applied.hold_id, applied.offline, applied.expected_redeemed) == ("hold-7", False, 125)
    assert applied.receipt is not None and applied.receipt.redeem_points == 125
    assert not any(k.startswith("calc:") and v for k, v in ctx.state.data.items())  # used once


@pytest.mark.parametrize(
    ("before", "why"),
    [
        (
            [("/counterparty/detail", p.detail())],
            "больше разрешённого",
        ),  # known, but no recalc allowed anything
        ([("/retaildemand/recalc", p.recalc(spending=True))], "Код подтверждения"),  # no code was sent
    ],
)
async def test_spending_without_recalc_or_code_is_refused_and_nothing_stored(
    before: list[Any], why: str
) -> None:
    ctx = context(FakeDesk())
    *_, sale = await calls(ctx, *before, ("/retaildemand", p.sale(spend=125)))
    assert sale[0] == 412 and why in sale[1]["errors"][0]["error_message"]
    assert ctx.stored == {}


async def test_slow_or_failing_sms_is_a_cashier_message_not_a_hang() -> None:
    for desk, status in (
        (FakeDesk(slow=True), 503),
        (FakeDesk(status="not_sent"), 503),
        (FakeDesk(status="rate_limited"), 429),
        (FakeDesk(status="locked"), 423),
    ):
        ctx = context(desk)
        got, body = await asyncio.wait_for(
            call(
                ctx,
                "/retaildemand/verify",
                {"retailStore": p.store(), "counterpartyId": "c", "phone": p.PHONE},
            ),
            5,
        )
        assert got == status and len(body["errors"][0]["error_message"]) > 10
        assert "code:79031234567" not in ctx.state.data


async def test_resent_sale_is_stored_once_and_other_content_is_a_conflict() -> None:
    ctx = context()
    [first, again, other] = await calls(
        ctx,
        ("/retaildemand", p.sale()),
        ("/retaildemand", p.sale()),
        ("/retaildemand", p.sale(pos=[p.position(P1, 1, 500.0)])),
    )
    assert first == again == (201, None)
    assert other[0] == 409 and other[1]["errors"][0]["error"]
    assert len(ctx.stored) == 1 and len(ctx.submits) == 2  # the conflicting copy went to the outbox's queue
    assert ctx.counts["duplicate"] == 1


async def test_partial_then_full_then_repeated_return_is_capped_at_the_sale(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ctx = context()
    one = p.sales_return("r1", pos=[p.position(P1, 1, 500.0)])
    rest = p.sales_return("r2", pos=[p.position(P1, 5, 500.0), p.position(P2, 1, 250.0)])
    late = p.sales_return("r3", pos=[p.position(P2, 1, 250.0)])
    replies = await calls(
        ctx,
        ("/retaildemand", p.sale()),
        ("/retailsalesreturn", one),
        ("/retailsalesreturn", rest),
        ("/retailsalesreturn", late),
        ("/retailsalesreturn", one),
    )
    assert all(r == (201, None) for r in replies)
    refunds = [e for e in ctx.stored.values() if e.refund_lines]
    assert [[(x.line_id, x.qty_milli) for x in e.refund_lines] for e in refunds] == [
        [(P1, 1000)],
        [(P1, 1000), (P2, 1000)],
    ]
    # r2 asked 5 of P1 with 1 left, r3 found nothing left: both visible (counted, WARNING), both 201
    # (the return already happened in MoySklad); the resent r1 is a plain duplicate
    assert ctx.counts["bad_input"] == 2 and ctx.counts["duplicate"] == 1 and ctx.counts["ignored"] == 0
    warned = [r for r in caplog.records if r.levelname == "WARNING" and "capped" in r.message]
    assert [(r.key, r.asked_milli, r.taken_milli, r.returned_before_milli) for r in warned] == [  # type: ignore[attr-defined]
        ("moysklad:return:r2", json.dumps({P1: 5000}), json.dumps({P1: 1000}), json.dumps({P1: 1000})),
        ("moysklad:return:r3", json.dumps({P2: 1000}), json.dumps({P2: 0}), json.dumps({P2: 1000})),
    ]
    assert "nothing left" in warned[1].message and warned[1].document_id == "r3"  # type: ignore[attr-defined]
    assert "doc:moysklad:return:r3" in ctx.state.data  # its resend is a duplicate, not a second warning


async def test_a_return_of_goods_the_sale_did_not_have_takes_nothing_and_is_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ctx = context()
    odd = p.sales_return("r9", pos=[p.position("3f4e5d6c-0b6c-11ef-0a80-0d6e00001234", 1, 99.0)])
    replies = await calls(
        ctx, ("/retaildemand", p.sale()), ("/retailsalesreturn", odd), ("/retailsalesreturn", odd)
    )
    assert replies == [(201, None)] * 3
    assert [e.key for e in ctx.stored.values()] == ["moysklad:demand:5f6e7d8c-6ea1-11f0-0a80-0d6e00aabbcc"]
    assert ctx.counts["bad_input"] == 1 and ctx.counts["duplicate"] == 1
    assert sum(r.levelname == "WARNING" and "nothing left" in r.message for r in caplog.records) == 1


async def test_gift_card_lookup_and_payment() -> None:
    ctx = context()
    sale = p.sale(giftCards=[{"id": "gid", "name": "GC-1", "paymentSum": 40000}])
    over = p.sale("d-2", giftCards=[{"id": "gid", "name": "GC-1", "paymentSum": 60001}])
    [before, paid, after, too_much, missing] = await calls(
        ctx,
        (f"/giftcard?name=GC-1&retailStoreId={p.STORE_ID}", None),
        ("/retaildemand", sale),
        (f"/giftcard?name=GC-1&retailStoreId={p.STORE_ID}", None),
        ("/retaildemand", over),
        (f"/giftcard?name=NOPE&retailStoreId={p.STORE_ID}", None),
    )
    assert before == (
        200,
        {
            "name": "GC-1",
            "id": "gid",
            "status": "CAN_BE_USED",
            "initialBalance": 100000,
            "currentBalance": 100000,
        },
    )
    assert paid == (201, None) and after[1]["currentBalance"] == 60000
    assert after[1]["status"] == "PARTIALLY_REDEEMED"
    assert too_much[0] == 400 and too_much[1]["errors"][0]["parameter"] == "giftCards[0].paymentSum"
    assert missing[0] == 404
    [event] = ctx.stored.values()
    assert event.receipt is not None and ("gift_card", 40000) in [
        (x.kind, x.amount) for x in event.receipt.payments
    ]


async def test_per_document_state_is_forgotten_after_keep_days_and_gift_ledgers_are_kept() -> None:
    ctx = context()
    sale = p.sale(giftCards=[{"id": "gid", "name": "GC-1", "paymentSum": 40000}])
    one = p.sales_return("r1", pos=[p.position(P1, 1, 500.0)])
    assert await calls(ctx, ("/retaildemand", sale), ("/retailsalesreturn", one)) == [(201, None)] * 2
    kept = {key.partition(":")[0]: keep for key, keep in ctx.state.keep_s.items()}
    assert kept["doc"] == kept["sale"] == kept["returned"] == 180 * 86_400
    assert kept["gift"] is None  # a gift card's spending is money: never forgotten


async def test_storage_failure_is_503_and_not_remembered() -> None:
    ctx = context()
    ctx.storage_fails = True
    status, body = await call(ctx, "/retaildemand", p.sale())
    assert status == 503 and body["errors"][0]["error_message"]
    assert not any(k.startswith("doc:") for k in ctx.state.data)


async def test_a_base_url_registered_with_a_trailing_slash_still_routes() -> None:
    ctx = context()
    async with serve(driver(), ctx) as client:
        resp = await client.post(
            "/v1/moysklad//counterparty/detail", data=p.dumps(p.detail()), headers=p.HEADERS
        )
        assert resp.status == 200 and (await resp.json()) == {"bonusProgram": {"agentBonusBalance": 500}}
        resp = await client.get(
            f"/v1/moysklad//giftcard?name=GC-1&retailStoreId={p.STORE_ID}", headers=p.HEADERS
        )
        assert resp.status == 200


BAD = [
    ("bad token", "/retaildemand", p.sale(), {"Lognex-Discount-API-Auth-Token": "nope"}, 401),
    ("no token", "/retaildemand/recalc", p.recalc(), {"Lognex-Discount-API-Auth-Token": ""}, 401),
    ("malformed JSON", "/retaildemand", b'{"positions": [', {}, 400),
    ("not JSON", "/retaildemand", p.sale(), {"Content-Type": "text/plain"}, 415),
    ("no positions", "/retaildemand", {**p.sale(), "positions": []}, {}, 400),
    ("negative price", "/retaildemand", p.sale(pos=[p.position(P1, 1, -5)]), {}, 400),
    ("huge price", "/retaildemand", p.sale(pos=[p.position(P1, 1, 10**12)]), {}, 400),
    ("huge quantity", "/retailsalesreturn", p.sales_return(pos=[p.position(P1, 10**9, 1)]), {}, 400),
    ("negative points", "/retaildemand", p.sale(spend=-5), {}, 400),
    (
        "unknown customer spending",
        "/retaildemand",
        p.sale(spend=5, agent_body={"meta": {"id": "nobody"}}),
        {},
        412,
    ),
    ("more than the last recalc allowed", "/retaildemand", p.sale(spend=1000), {}, 412),
    (
        "unknown gift card",
        "/retaildemand",
        p.sale(giftCards=[{"id": "x", "name": "NOPE", "paymentSum": 1}]),
        {},
        400,
    ),
    ("unknown customer balance", "/counterparty/detail", p.detail("nobody", "+79990000001"), {}, 404),
    ("registration needs a code", "/counterparty", p.create("UNCHECKED"), {}, 412),
]


@pytest.mark.parametrize(("path", "body", "headers", "status"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
async def test_bad_input_table_errors_shape_and_nothing_stored(
    path: str, body: Any, headers: dict[str, str], status: int
) -> None:
    ctx = context(FakeDesk())
    async with serve(driver(), ctx) as client:
        await client.post(
            "/v1/moysklad/counterparty/detail", data=p.dumps(p.detail()), headers=p.HEADERS
        )  # linked
        before = dict(ctx.state.data)
        resp = await client.post(f"/v1/moysklad{path}", data=p.dumps(body), headers={**p.HEADERS, **headers})
        answer = await resp.json()
    assert resp.status == status, answer
    [item] = answer["errors"]
    assert isinstance(item["code"], int) and item["error"] and item["error_message"], answer
    assert ctx.stored == {} and ctx.state.data == before  # nothing stored, nothing remembered


async def test_a_resend_after_an_interrupted_answer_records_the_gift_card_and_return_once() -> None:
    """The first copy was stored but its answer (and the driver's bookkeeping) was cut off."""
    ctx = context()
    sale = p.sale(giftCards=[{"id": "gid", "name": "GC-1", "paymentSum": 40000}])
    ret = p.sales_return("r1", pos=[p.position(P1, 1, 500.0)])
    async with serve(driver(), ctx) as client:
        for body, path, bookkeeping in (
            (sale, "/retaildemand", ("gift:", "doc:moysklad:demand")),
            (ret, "/retailsalesreturn", ("returned:", "doc:moysklad:return")),
        ):
            await client.post(f"/v1/moysklad{path}", data=p.dumps(body), headers=p.HEADERS)
            for key in [k for k in ctx.state.data if k.startswith(bookkeeping)]:
                del ctx.state.data[key]  # as if the handler stopped right after the outbox took it
            for _ in range(2):
                resp = await client.post(f"/v1/moysklad{path}", data=p.dumps(body), headers=p.HEADERS)
                assert resp.status == 201
        card = await client.get(
            f"/v1/moysklad/giftcard?name=GC-1&retailStoreId={p.STORE_ID}", headers=p.HEADERS
        )
        assert (await card.json())["currentBalance"] == 60000
    assert json.loads(ctx.state.data["returned:moysklad:demand:5f6e7d8c-6ea1-11f0-0a80-0d6e00aabbcc"]) == {
        "moysklad:return:r1": {P1: 1000}
    }
    assert len(ctx.stored) == 2


def test_check_finds_no_token_and_a_gift_card_listed_twice() -> None:
    assert check({"tokens": ["t"]}) == []
    assert check({"tokens_file": "moysklad.tokens"}) == []
    [none] = check({})
    assert (none.level, none.key) == ("FAIL", "tokens") and "posgw moysklad register" in none.fix
    twice = [{"name": "G", "id": "a", "initial_kopecks": 1}, {"name": "G", "id": "b", "initial_kopecks": 1}]
    assert [(f.level, f.key) for f in check({"tokens": ["t"], "gift_cards": twice})] == [
        ("FAIL", "gift_cards")
    ]
    assert (
        check(
            {
                "tokens": ["t"],
                "gift_cards": [{"name": "G", "id": "a", "initial_kopecks": 1, "expires": "soon"}],
            }
        )[0].key
        == ""
    )


async def test_a_sale_commits_with_the_calc_token_of_the_recalc_of_its_own_goods() -> None:
    """The till recalculated two baskets for the customer (another till, or items changed back): the
    sale of the first carries the first's token, not whatever the customer's last recalc said."""
    ctx = context()
    other = p.recalc(positions=[p.position(P2, 3, 250.00)])
    [spent, _, sale] = await calls(
        ctx,
        ("/retaildemand/recalc", p.recalc(spending=True)),
        ("/retaildemand/recalc", other),
        ("/retaildemand", p.sale(spend=125)),
        codes_for_spending=False,
    )
    assert spent[1]["bonusProgram"]["bonusValueToSpend"] == 125 and sale == (201, None)
    [event] = ctx.stored.values()
    claims = ctx.calc_claims(event.calc_token)
    assert (claims.redeemed, claims.hold_id) == (125, "hold-7")
    assert event.receipt is not None and event.receipt.customer == claims.customer


async def test_a_sale_spending_nothing_after_a_spending_recalc_is_committed_without_that_token() -> None:
    """The recalc that spent is not the one the till applied: its points and hold are not applied."""
    ctx = context()
    [_, sale] = await calls(
        ctx, ("/retaildemand/recalc", p.recalc(spending=True)), ("/retaildemand", p.sale(spend=0))
    )
    assert sale == (201, None)
    [event] = ctx.stored.values()
    assert event.calc_token == "" and event.expected_redeemed is None
    assert event.receipt is not None and event.receipt.customer == CustomerId(IdKind.CUSTOMER_ID, "7")


async def test_a_kept_token_that_no_longer_verifies_grants_nothing(caplog: pytest.LogCaptureFixture) -> None:
    ctx = context()
    doc = wire.parse_sale(p.dumps(p.sale()))
    ctx.state.data[mapping.calc_key(doc.store, doc.agent, doc.positions)] = "c1.not-a.token"
    [_, spending, plain] = await calls(
        ctx,
        ("/counterparty/detail", p.detail()),  # linked: the customer is known, the token is not
        ("/retaildemand", p.sale(spend=5)),
        ("/retaildemand", p.sale()),
        codes_for_spending=False,
    )
    assert spending[0] == 412 and "(0)" in spending[1]["errors"][0]["error_message"]
    assert plain == (201, None)
    [event] = ctx.stored.values()
    assert event.calc_token == "" and event.receipt is not None and event.receipt.redeem_points == 0
    assert any(r.levelname == "WARNING" and "does not verify" in r.message for r in caplog.records)


@pytest.mark.parametrize(
    "typed",
    ["8 903 123-45-67", "8 (903) 123-45-67", "89031234567", "+7 903 123-45-67", "79031234567", "9031234567"],
)
async def test_search_finds_the_customer_whatever_the_phone_spelling(typed: str) -> None:
    """The phone goes to the core as typed and the core normalises it (the test context does, with
    the function the reference core uses); "8 903…" used to become "+8903…", nobody's number."""
    ctx = context()
    query = f"search={quote(typed)}&retailStoreId={p.STORE_ID}"
    status, body = await call(ctx, f"/counterparty?{query}", method="GET")
    assert (status, body) == (
        200,
        {"rows": [{"id": customer_uuid("7"), "name": "Анна П.", "phone": "+79031234567"}]},
    )


@pytest.mark.parametrize(
    ("offline", "text"),
    [
        (False, "Карта *4567\nСписано баллов: 125\nНачислено баллов: 56"),
        (True, "Карта *4567\nСписано баллов: 125\nБудет начислено баллов: 56"),
    ],
    ids=["online", "offline"],
)
async def test_receipt_text_is_the_gateway_slip(offline: bool, text: str) -> None:
    """receiptExtraInfo is gateway.slip's text (the customer masked to the last four digits; an
    offline answer's accrual is provisional); MoySklad prints it on the receipt."""
    ctx = context()
    online = ctx.calc
    ctx.calc = lambda r: dataclasses.replace(online(r), offline=offline)
    status, body = await call(ctx, "/retaildemand/recalc", p.recalc(spending=True))
    assert status == 200 and body["bonusProgram"]["receiptExtraInfo"] == text


def numbered_holds(ctx: FakeContext) -> None:
    """Each spending calc gets its own hold (hold-1, hold-2, ...), as the core's holds are."""
    online, made = ctx.calc, [0]

    def calc(r: Receipt) -> Any:
        result = online(r)
        if not result.hold_id:
            return result
        made[0] += 1
        hold = f"hold-{made[0]}"
        claims = ctx.calc_claims(result.token)
        return dataclasses.replace(result, hold_id=hold, token=token(
            customer=claims.customer, redeemed=claims.redeemed, hold_id=hold, register_id=claims.register_id
        ))

    ctx.calc = calc


def kept(ctx: FakeContext) -> list[tuple[int, str]]:
    """(points redeemed, hold) of every calc token kept for a sale, oldest first, per calc key."""
    return [
        (claims.redeemed, claims.hold_id)
        for key, value in ctx.state.data.items()
        if key.startswith("calc:")
        for claims in map(ctx.calc_claims, mapping.calc_tokens(value))
    ]


def applied(ctx: FakeContext) -> list[tuple[int, str, int | None]]:
    """(points the calc token applies, its hold, points the sale spends) of every stored sale, in order."""
    out = []
    for event in ctx.stored.values():
        claims = ctx.calc_claims(event.calc_token) if event.calc_token else None
        assert event.receipt is not None
        out.append((0 if claims is None else claims.redeemed, "" if claims is None else claims.hold_id,
                    event.receipt.redeem_points))
    return out


SALE_2 = "6a7b8c9d-6ea1-11f0-0a80-0d6e00aabbdd"
SALE_3 = "7b8c9d0e-6ea1-11f0-0a80-0d6e00aabbee"


async def test_two_recalcs_of_the_same_basket_keep_two_tokens_and_both_sales_pass() -> None:
    """The reviewer's case: two tills (or a receipt reopened) recalc the same goods for the same
    customer; neither body says which till. Each sale spends what its recalc allowed and commits
    with a token of its own; a third sale of those goods finds none left (a token is used once)."""
    ctx = context()
    numbered_holds(ctx)
    got = await calls(
        ctx,
        ("/retaildemand/recalc", p.recalc(spending=True)),
        ("/retaildemand/recalc", p.recalc(spending=True)),
        ("/retaildemand", p.sale(spend=125)),
        ("/retaildemand", p.sale(SALE_2, spend=125)),
        ("/retaildemand", p.sale(SALE_3, spend=125)),
        codes_for_spending=False,
    )
    assert [status for status, _ in got] == [200, 200, 201, 201, 412]
    assert [body["bonusProgram"]["bonusValueToSpend"] for _, body in got[:2]] == [125, 125]
    assert "(0)" in got[4][1]["errors"][0]["error_message"]
    # the newest matching token first: each hold consumed by exactly one sale
    assert applied(ctx) == [(125, "hold-2", 125), (125, "hold-1", 125)]
    assert kept(ctx) == []


async def test_each_sale_takes_the_recalc_of_its_own_spending() -> None:
    """Two tills' recalcs of the same basket allowed different spending: each sale commits with the
    token that redeemed what it spends, whichever came first; none can spend more than a recalc
    allowed, nor use a token twice."""
    ctx = context()
    numbered_holds(ctx)
    got = await calls(
        ctx,
        ("/retaildemand/recalc", p.recalc(spending=True)),  # the maximum: 125
        ("/retaildemand/recalc", p.recalc(spending=True, preferred=50)),
        ("/retaildemand", p.sale(spend=130)),  # more than any recalc allowed
        ("/retaildemand", p.sale(SALE_2, spend=125)),
        ("/retaildemand", p.sale(SALE_3, spend=125)),  # that allowance is used
        ("/retaildemand", p.sale(spend=50)),
        codes_for_spending=False,
    )
    assert [status for status, _ in got] == [200, 200, 412, 201, 412, 201]
    assert "(50)" in got[2][1]["errors"][0]["error_message"]  # judged against the newest recalc
    assert "(50)" in got[4][1]["errors"][0]["error_message"]
    assert applied(ctx) == [(125, "hold-1", 125), (50, "hold-2", 50)]
    assert kept(ctx) == []


async def test_a_reopened_receipts_last_recalc_wins_and_earning_takes_nothing_away() -> None:
    """One till recalcs the same basket again (the receipt reopened): its sale commits with the
    last recalc that spent what it spends (hold-2); the earlier one's token stays, unused, for a day
    (its hold expires in the core). An online earning recalc keeps nothing and takes nothing away:
    the gateway cannot tell it from another till's; a sale spending nothing commits without a
    spending token and leaves it."""
    ctx = context()
    numbered_holds(ctx)
    got = await calls(
        ctx,
        ("/retaildemand/recalc", p.recalc(spending=True)),
        ("/retaildemand/recalc", p.recalc(spending=True)),
        ("/retaildemand/recalc", p.recalc()),
        ("/retaildemand", p.sale(spend=0)),
        ("/retaildemand", p.sale(SALE_2, spend=125)),
        codes_for_spending=False,
    )
    assert [status for status, _ in got] == [200, 200, 200, 201, 201]
    assert applied(ctx) == [(0, "", 0), (125, "hold-2", 125)]
    assert kept(ctx) == [(125, "hold-1")]


async def test_at_most_eight_tokens_are_kept_per_basket_the_oldest_dropped() -> None:
    ctx = context()
    numbered_holds(ctx)
    n = mapping.CALC_TOKENS_KEPT + 2
    got = await calls(ctx, *[("/retaildemand/recalc", p.recalc(spending=True))] * n)
    assert [status for status, _ in got] == [200] * n
    assert kept(ctx) == [(125, f"hold-{i}") for i in range(3, n + 1)]
    assert [v for k, v in ctx.state.keep_s.items() if k.startswith("calc:")] == [86_400.0]


class FailingState(MemoryState):
    """A state store whose writes of keys starting with ``prefix`` (calc tokens) fail, or wait for
    ``gate``."""

    def __init__(self, gate: asyncio.Event | None = None, prefix: str = "calc:") -> None:
        super().__init__()
        self.gate, self.prefix = gate, prefix
        self.entered = asyncio.Event()
        self.reads: list[tuple[str, bool]] = []  # (key, the gate was open) of every read
        self.document_read = asyncio.Event()  # a sale's first read

    async def get(self, key: str) -> str | None:
        self.reads.append((key, self.gate is not None and self.gate.is_set()))
        if key.startswith("doc:"):
            self.document_read.set()
        return await super().get(key)

    async def put(self, key: str, value: str, *, keep_s: float | None = None) -> None:
        if key.startswith(self.prefix):
            self.entered.set()
            if self.gate is None:
                raise StorageError("disk full (test)")
            await self.gate.wait()
        await super().put(key, value, keep_s=keep_s)


async def test_a_failed_token_write_still_answers_the_recalc_and_the_sale_is_checked_without_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ctx = context()
    ctx.state = FailingState()
    recalc, spending, plain = await calls(
        ctx,
        ("/retaildemand/recalc", p.recalc(spending=True)),
        ("/retaildemand", p.sale(spend=125)),
        ("/retaildemand", p.sale(SALE_2)),
        codes_for_spending=False,
    )
    assert recalc[0] == 200 and recalc[1]["bonusProgram"]["bonusValueToSpend"] == 125
    assert [x["discountedPrice"] for x in recalc[1]["positions"]] == [450, 225]
    assert spending[0] == 412 and "(0)" in spending[1]["errors"][0]["error_message"]
    assert plain == (201, None) and applied(ctx) == [(0, "", 0)]
    assert kept(ctx) == [] and ctx.counts["storage_error"] == 1
    assert any(
        r.levelname == "WARNING" and "without keeping its calc token" in r.message for r in caplog.records
    )


async def test_a_slow_token_write_does_not_hold_the_recalc_and_the_sale_waits_for_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The write is stuck (a slow disk) until the test lets it go: the recalc is answered anyway,
    WARNING; the write goes on, and a sale of those goods waits for it and finds the token."""
    ctx = context()
    gate = asyncio.Event()
    ctx.state = state = FailingState(gate)
    async with serve(driver(codes_for_spending=False, recalc_budget_ms=50), ctx) as client:
        resp = await asyncio.wait_for(
            client.post("/v1/moysklad/retaildemand/recalc", data=p.dumps(p.recalc(spending=True)),
                        headers=p.HEADERS),
            5,
        )
        assert resp.status == 200 and (await resp.json())["bonusProgram"]["bonusValueToSpend"] == 125
        assert state.entered.is_set() and kept(ctx) == []  # answered while the write is stuck
        assert any(r.levelname == "WARNING" and "before its calc token was kept" in r.message
                   for r in caplog.records)
        sale = asyncio.ensure_future(
            client.post("/v1/moysklad/retaildemand", data=p.dumps(p.sale(spend=125)), headers=p.HEADERS)
        )
        # its first read; this state store never suspends a reader, so the sale runs on to the lock
        await asyncio.wait_for(state.document_read.wait(), 5)
        assert not sale.done()
        gate.set()
        resp = await asyncio.wait_for(sale, 5)
        assert resp.status == 201
    # the recalc's write read the key with the gate shut; the sale only after the write went on
    assert [opened for key, opened in state.reads if key.startswith("calc:")] == [False, True]
    assert applied(ctx) == [(125, "hold-7", 125)] and kept(ctx) == []


async def test_a_failed_link_write_does_not_fail_the_recalc_or_the_sale(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``link:`` is a shortcut: when it cannot be kept the customer is found by phone each time."""
    ctx = context()
    ctx.state = FailingState(prefix="link:")
    recalc, sale = await calls(
        ctx,
        ("/retaildemand/recalc", p.recalc(spending=True)),
        ("/retaildemand", p.sale(spend=125)),
        codes_for_spending=False,
    )
    assert recalc[0] == 200 and recalc[1]["bonusProgram"]["bonusValueToSpend"] == 125
    assert sale == (201, None) and applied(ctx) == [(125, "hold-7", 125)]
    assert not any(k.startswith("link:") for k in ctx.state.data)
    assert any(r.levelname == "WARNING" and "link not kept" in r.message for r in caplog.records)


class InterruptedDocState(MemoryState):
    """A state store whose first ``doc:`` write (the last write of a sale) fails (``fail``), or is
    held until that document is looked up again (MoySklad resending it while the first POST is in
    flight), so the resend arrives mid-commit whatever the machine's speed."""

    def __init__(self, *, fail: bool = False) -> None:
        super().__init__()
        self.fail = fail
        self.writing: str | None = None  # the doc: key whose first write is held
        self.resent = asyncio.Event()
        self.interrupted = False

    async def get(self, key: str) -> str | None:
        if key == self.writing:
            self.resent.set()
        return await super().get(key)

    async def put(self, key: str, value: str, *, keep_s: float | None = None) -> None:
        if key.startswith("doc:") and not self.interrupted:
            self.interrupted = True
            if self.fail:
                raise StorageError("disk full (test)")
            self.writing = key
            await self.resent.wait()
            self.writing = None
        await super().put(key, value, keep_s=keep_s)


async def resent_while_in_flight(client: Any, body: Any) -> tuple[int, int]:
    """The statuses of a sale and of MoySklad's resend of it that arrives before the first is answered."""
    async def post() -> int:
        resp = await client.post("/v1/moysklad/retaildemand", data=p.dumps(body), headers=p.HEADERS)
        await resp.read()
        return int(resp.status)

    first = asyncio.ensure_future(post())
    second = asyncio.ensure_future(post())
    a, b = await asyncio.wait_for(asyncio.gather(first, second), 10)  # a hang guard, not a timing check
    return a, b


async def test_a_resend_of_a_spending_sale_in_flight_is_201_and_stored_once() -> None:
    """§9: same key, same content: 201 again, even while the first POST is still committing
    (the resend waits for the basket and finds the document stored, it does not commit it again)."""
    ctx = context()
    ctx.state = state = InterruptedDocState()
    numbered_holds(ctx)
    async with serve(driver(codes_for_spending=False), ctx) as client:
        recalc = await client.post("/v1/moysklad/retaildemand/recalc", data=p.dumps(p.recalc(spending=True)),
                                   headers=p.HEADERS)
        assert recalc.status == 200
        assert await resent_while_in_flight(client, p.sale(spend=125)) == (201, 201)
    assert state.resent.is_set()  # the resend really came mid-commit
    assert applied(ctx) == [(125, "hold-1", 125)] and kept(ctx) == []
    assert ctx.counts["duplicate"] == 1


async def test_a_resend_in_flight_does_not_take_the_other_tills_token() -> None:
    """Two tills recalc the same basket (two tokens); till 1's sale is resent while in flight: the
    resend uses nothing, and till 2's sale still commits with its own token."""
    ctx = context()
    ctx.state = InterruptedDocState()
    numbered_holds(ctx)
    async with serve(driver(codes_for_spending=False), ctx) as client:
        for _ in range(2):
            recalc = await client.post("/v1/moysklad/retaildemand/recalc",
                                       data=p.dumps(p.recalc(spending=True)), headers=p.HEADERS)
            assert recalc.status == 200
        assert await resent_while_in_flight(client, p.sale(spend=125)) == (201, 201)
        assert kept(ctx) == [(125, "hold-1")]  # till 2's token is still there
        till2 = await client.post("/v1/moysklad/retaildemand", data=p.dumps(p.sale(SALE_2, spend=125)),
                                  headers=p.HEADERS)
        assert till2.status == 201, await till2.text()
    assert applied(ctx) == [(125, "hold-2", 125), (125, "hold-1", 125)] and kept(ctx) == []


async def test_a_resend_after_a_failed_document_write_commits_with_the_same_token() -> None:
    """The sale was stored and its token removed, then ``doc:`` could not be written (503): the
    resend is 201, with the token the first attempt used, and the sale is stored once."""
    ctx = context()
    ctx.state = InterruptedDocState(fail=True)
    numbered_holds(ctx)
    got = await calls(
        ctx,
        ("/retaildemand/recalc", p.recalc(spending=True)),
        ("/retaildemand", p.sale(spend=125)),
        ("/retaildemand", p.sale(spend=125)),
        ("/retaildemand", p.sale(spend=125)),
        codes_for_spending=False,
    )
    assert [status for status, _ in got] == [200, 503, 201, 201], got
    assert applied(ctx) == [(125, "hold-1", 125)] and kept(ctx) == []
    assert ctx.counts["committed"] == 1
