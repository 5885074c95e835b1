"""Evotor terminal simulator ↔ real gateway (evotor driver) ↔ reference core, over real sockets.

A day of receipts on two terminals: redemption, accrual, per-line paybacks and cloud copies
of closed receipts. After the outbox drains, the core has applied exactly the documents the
gateway acknowledged, once each, and every customer's balance is the welcome bonus plus the
points of those documents.
"""

from __future__ import annotations

from pathlib import Path

from simulators.registers.evotor import EvotorConfig, run_tills
from tests.simulators.registers.component import PHONES, running_system

EVOTOR = {"evotor": {"pairing_tokens": ["plugin-token"], "cloud_user_token": "cloud-token"}}


async def test_a_day_of_evotor_receipts_reaches_the_core_exactly(tmp_path: Path) -> None:
    async with running_system(tmp_path, EVOTOR) as system:
        config = EvotorConfig(customer_share=0.9, redeem_share=0.4, refund_share=0.25, cancel_share=0.0,
                              cloud_share=0.3)
        report = await run_tills(system.gateway_url, "plugin-token", tills=2, receipts=40, seed=7,
                                 customers=PHONES, cloud_token="cloud-token", config=config)
        assert report.errors == 0, report.error_messages
        assert {a.kind for a in report.acks} == {"sale", "refund"}
        figures = await system.check(report.acks)
        assert figures["redeemed"] > 0 and figures["accrued"] > 0, figures
        assert report.duplicates > 0  # the cloud copies were recognised as the same receipts



async def test_a_cleared_receipt_releases_its_hold(tmp_path: Path) -> None:
    async with running_system(tmp_path, EVOTOR) as system:
        config = EvotorConfig(customer_share=0.9, redeem_share=0.4, refund_share=0.0, cancel_share=0.5,
                              cloud_share=0.0)
        report = await run_tills(system.gateway_url, "plugin-token", tills=1, receipts=8, seed=7,
                                 customers=PHONES, config=config)
        assert report.errors == 0, report.error_messages
        assert "cancel" in {a.kind for a in report.acks}
        await system.check(report.acks)
