"""Each misbehaviour switch does what it says, and the sim notices a gateway that gets it wrong."""

from __future__ import annotations

from typing import Any

from simulators.registers.native import Misbehaviour, TillConfig, run_tills
from tests.simulators.registers.native.fake_gateway import FakeGateway


def cfg(**mis: Any) -> TillConfig:
    return TillConfig(refund_share=0.0, cancel_share=0.0, misbehaviour=Misbehaviour(**mis))


async def test_duplicate_sends_each_sale_twice_and_expects_dedup(fake: FakeGateway) -> None:
    report = await run_tills(fake.url, "secret", tills=2, receipts=5, seed=1, shift="s",
                             config=cfg(duplicate=1.0))
    assert report.errors == 0, report.error_messages
    assert len(fake.seen("sales")) == 10 and len(fake.sales) == 5
    assert report.acknowledged == 5 and report.duplicates == 5
    assert len(report.acks) == 10 and len(report.ack_keys) == 5


async def test_duplicate_catches_a_gateway_that_does_not_dedup(fake: FakeGateway) -> None:
    fake.dedup = False
    report = await run_tills(fake.url, "secret", tills=1, receipts=3, seed=1, shift="s",
                             config=cfg(duplicate=1.0))
    assert report.errors == 3
    assert all("not deduplicated" in m for m in report.error_messages)


async def test_resend_after_timeout_keeps_the_identity(fake: FakeGateway) -> None:
    fake.delay_first_sale_s = 0.3
    report = await run_tills(fake.url, "secret", tills=2, receipts=4, seed=1, shift="s",
                             config=cfg(resend_after_timeout=1.0, resend_timeout_ms=50))
    assert report.errors == 0, report.error_messages
    assert report.timeouts == 4 and report.retries == 4
    assert set(fake.attempts.values()) == {2}
    assert report.acknowledged == 4 and len(fake.sales) == 4
    assert report.ack_keys == set(fake.sales)
    assert len(report.acks) == 4 and all(a.attempts == 2 for a in report.acks)


async def test_bad_token_expects_401_then_uses_the_right_key(fake: FakeGateway) -> None:
    report = await run_tills(fake.url, "secret", tills=1, receipts=3, seed=1, shift="s",
                             config=cfg(bad_token=1.0))
    assert report.errors == 0, report.error_messages
    assert report.unauthorized == len(fake.unauthorized) == len(fake.requests) == 6  # calc + sale each
    assert report.acknowledged == 3 and len(fake.sales) == 3


async def test_bad_token_accepted_is_reported(fake: FakeGateway) -> None:
    fake.accept_any_key = True
    report = await run_tills(fake.url, "secret", tills=1, receipts=2, seed=1, shift="s",
                             config=cfg(bad_token=1.0))
    assert report.unauthorized == 0
    assert report.errors == 4 and all("expected 401" in m for m in report.error_messages)


async def test_slow_reads_still_work_but_take_longer(fake: FakeGateway) -> None:
    report = await run_tills(fake.url, "secret", tills=1, receipts=2, seed=1, shift="s",
                             config=cfg(slow_read_ms=10))
    assert report.errors == 0 and report.acknowledged == 2
    assert report.calc_p50_ms >= 20  # a calculate answer is several 64-byte chunks


async def test_inconsistent_answer_is_an_error_and_the_sale_goes_at_full_price(fake: FakeGateway) -> None:
    fake.bad_answer = True
    report = await run_tills(fake.url, "secret", tills=1, receipts=2, seed=4, shift="s",
                             config=TillConfig(refund_share=0.0, cancel_share=0.0))
    assert report.errors == 2 and all("inconsistent answer" in m for m in report.error_messages)
    assert report.acknowledged == 2
    for sale in fake.sales.values():
        assert sale["redeemed_points"] == 0
        assert sale["payments"][0]["amount"] == sum(line["amount"] for line in sale["lines"])
