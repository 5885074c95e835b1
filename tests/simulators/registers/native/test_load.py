"""The till simulator against a fake native API: valid bodies, consistent application of the
answers, acknowledgements recorded, retries with the same identity."""

from __future__ import annotations

import asyncio

from simulators.faults import FaultProxy
from simulators.registers.native import TillConfig, run_tills
from tests.simulators.registers.native.fake_gateway import FakeGateway

CUSTOMERS = ["+79123456789", "card:4000123", "app_code:123456"]


async def test_bodies_are_valid_and_answers_applied(fake: FakeGateway) -> None:
    config = TillConfig(refund_share=0.3, cancel_share=0.15)
    report = await run_tills(fake.url, "secret", tills=3, receipts=40, seed=7, customers=CUSTOMERS,
                             config=config, shift="s1")
    assert fake.schema_errors == []
    assert report.errors == 0, report.error_messages
    assert (report.receipts, report.acknowledged, report.unacknowledged) == (40, 40, 0)
    assert len(fake.sales) == 40
    assert report.refunds == len(fake.refunds) > 0
    assert report.cancels == len(fake.cancels) > 0
    assert report.ack_keys == set(fake.sales) | set(fake.refunds) | set(fake.cancels)
    assert report.calc_count == len(fake.seen("calculate")) and report.calc_p99_ms >= report.calc_p50_ms > 0
    assert report.identified == len(fake.seen("identify")) > 0
    lines = [line for sale in fake.sales.values() for line in sale["lines"]]
    assert any(line["qty_milli"] % 1000 for line in lines), "no weight goods"
    assert any(line["discountable"] is False for line in lines)
    assert any("min_unit_price" in line for line in lines)
    # each sale applies exactly what its calculation answered
    redeemed = 0
    for sale in fake.sales.values():
        answer = fake.calc_answers[f"{sale['register_id']}/{sale['shift']}/{sale['receipt_number']}"]
        assert sale["redeemed_points"] == answer["redeemed_points"]
        assert sum(p["amount"] for p in sale["payments"]) == answer["payable"]
        assert sale.get("hold_id", "") == answer["hold_id"]
        redeemed += sale["redeemed_points"]
    assert redeemed > 0
    assert any("document_id" in s for s in fake.sales.values())
    assert any("document_id" not in s for s in fake.sales.values())
    refunded_by_line = [r for r in fake.refunds.values() if "lines" in r]
    assert refunded_by_line and all(x["qty_milli"] > 0 for r in refunded_by_line for x in r["lines"])


async def test_same_seed_same_receipts(fake: FakeGateway) -> None:
    first = await run_tills(fake.url, "secret", tills=1, receipts=5, seed=3, shift="a")
    bodies_a = [s["lines"] for s in fake.seen("sales")]
    second = await run_tills(fake.url, "secret", tills=1, receipts=5, seed=3, shift="b")
    bodies_b = [s["lines"] for s in fake.seen("sales")][5:]
    assert bodies_a == bodies_b
    assert first.seed == second.seed == 3
    assert first.duplicates == second.duplicates == 0  # another shift: new identities


async def test_503_is_retried_with_the_same_identity(fake: FakeGateway) -> None:
    fake.fail_sales = 2
    report = await run_tills(fake.url, "secret", tills=2, receipts=6, seed=1, shift="s",
                             config=TillConfig(refund_share=0, cancel_share=0))
    assert report.errors == 0, report.error_messages
    assert report.acknowledged == 6 and report.retries == 12
    assert set(fake.attempts.values()) == {3}
    by_identity: dict[str, list[object]] = {}
    for body in fake.seen("sales"):
        by_identity.setdefault(FakeGateway.identity(body), []).append(body)
    assert all(len(v) == 3 and v[0] == v[1] == v[2] for v in by_identity.values())
    assert all(a.attempts == 3 for a in report.acks)


async def test_sales_survive_a_gateway_outage(fake: FakeGateway) -> None:
    port = int(fake.url.rsplit(":", 1)[1])
    async with FaultProxy("127.0.0.1", 0, "127.0.0.1", port) as proxy:
        await proxy.set_mode("down")
        config = TillConfig(refund_share=0, cancel_share=0, calc_timeout_s=0.2, retry_for_s=20)
        run = asyncio.create_task(run_tills(f"http://{proxy.address}", "secret", tills=2, receipts=4,
                                            seed=2, shift="s", config=config))
        await asyncio.sleep(0.4)
        await proxy.set_mode("pass")
        report = await asyncio.wait_for(run, 20)
    assert report.acknowledged == 4 and report.unacknowledged == 0
    assert report.retries > 0
    assert len(fake.sales) == 4
    assert all("calculate" in m or "identify" in m for m in report.error_messages)


async def test_a_4xx_on_a_sale_is_an_error_not_an_ack(fake: FakeGateway) -> None:
    fake.reject_sales_400 = True
    report = await run_tills(fake.url, "secret", tills=1, receipts=2, seed=1, shift="s")
    assert report.acknowledged == 0 and report.unacknowledged == 2 and report.acks == []
    assert report.errors == 2 and "HTTP 400 BAD_REQUEST" in report.error_messages[0]


async def test_offline_answers_and_rejections_are_counted(fake: FakeGateway) -> None:
    fake.offline = True
    fake.reject_redeem = True
    config = TillConfig(customer_share=1.0, redeem_share=1.0, identify_share=0.0)
    report = await run_tills(fake.url, "secret", tills=1, receipts=4, seed=5, shift="s",
                             customers=CUSTOMERS, config=config)
    assert report.errors == 0, report.error_messages
    assert report.rejections == 4
    assert report.offline_answers == 4  # the recalculations without redemption
    calcs = fake.seen("calculate")
    assert [c.get("redeem_max", False) for c in calcs] == [True, False] * 4
    assert all(s["redeemed_points"] == 0 for s in fake.sales.values())
