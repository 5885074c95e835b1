"""1C tills (zeep on the gateway's WSDL) ↔ real gateway (onec driver) ↔ reference core, over real sockets.

A small trading day on two POS: Soft, Soft with the write-off, Fiscal, returns citing the sale,
rollbacks by TransactionID, balances, Fiscals resent under the same and a new RequestID, Fiscals
without Soft, write-offs above the approval (90003, nothing stored). After the outbox drains the
core has applied exactly the cheques the gateway acknowledged, once each, and every customer's
balance is the welcome bonus plus the points of those cheques.
"""

from __future__ import annotations

from pathlib import Path

from simulators.registers.onec import Misbehaviour, OneCConfig, run_tills
from tests.simulators.registers.component import PHONES, running_system

ONEC = {"onec": {"user": "1c", "password": "onec-secret"}}


async def test_a_1c_trading_day_reaches_the_core_exactly(tmp_path: Path) -> None:
    async with running_system(tmp_path, ONEC) as system:
        mis = Misbehaviour(
            same_id_resend=0.2,
            new_id_resend=0.2,
            fiscal_without_soft=0.1,
            over_approval=0.3,
            bad_password=0.05,
        )
        config = OneCConfig(
            password="onec-secret",
            customer_share=0.9,
            redeem_share=0.6,
            refund_share=0.2,
            cancel_share=0.1,
            misbehaviour=mis,
        )
        report = await run_tills(
            system.gateway_url, config, tills=2, receipts=24, seed=7, customers=list(PHONES)
        )
        assert report.errors == 0, report.error_messages
        assert {a.kind for a in report.acks} == {"sale", "refund", "cancel"}, report.acks
        assert report.duplicates > 0 and report.identified > 0
        figures = await system.check(report.acks)
        assert figures["redeemed"] > 0 and figures["accrued"] > 0, figures
