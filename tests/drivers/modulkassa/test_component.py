"""Modul Kassa register simulator ↔ real gateway (modulkassa driver) ↔ reference core, over real sockets.

A day of checks on two registers: redemption (split lines), accrual, per-line returns (their
loyalty-request gets identity impacts), duplicate and out-of-order broadcasts. After the
outbox drains, the core has applied exactly the checks the gateway acknowledged, once each,
and every customer's balance is the welcome bonus plus the points of those checks.
"""

from __future__ import annotations

from pathlib import Path

from simulators.registers.modulkassa import Misbehaviour, ModulKassaConfig, run_tills
from tests.simulators.registers.component import PHONES, running_system

MODULKASSA = {"modulkassa": {"pairing_tokens": ["plugin-token"]}}


async def test_a_day_of_modulkassa_checks_reaches_the_core_exactly(tmp_path: Path) -> None:
    async with running_system(tmp_path, MODULKASSA) as system:
        mis = Misbehaviour(duplicate=0.3, out_of_order=0.1, request_every_edit=0.2, bad_token=0.1)
        config = ModulKassaConfig(customer_share=0.9, redeem_share=0.4, refund_share=0.25, cancel_share=0.0,
                                  misbehaviour=mis)
        report = await run_tills(system.gateway_url, "plugin-token", tills=2, receipts=40, seed=11,
                                 customers=PHONES, config=config)
        assert report.errors == 0, report.error_messages
        assert {a.kind for a in report.acks} == {"sale", "refund"}
        assert report.duplicates > 0 and report.unauthorized > 0
        figures = await system.check(report.acks)
        assert figures["redeemed"] > 0 and figures["accrued"] > 0, figures



async def test_a_cancelled_check_releases_its_hold(tmp_path: Path) -> None:
    async with running_system(tmp_path, MODULKASSA) as system:
        config = ModulKassaConfig(customer_share=0.9, redeem_share=0.4, refund_share=0.0, cancel_share=0.5)
        report = await run_tills(system.gateway_url, "plugin-token", tills=1, receipts=8, seed=11,
                                 customers=PHONES, config=config)
        assert report.errors == 0, report.error_messages
        assert "cancel" in {a.kind for a in report.acks}
        await system.check(report.acks)
