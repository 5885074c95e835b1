"""The Evotor simulator counts what it did: the receipts asked for (a cleared receipt is a cancel, not
one more receipt) and the receipts whose customer the gateway recognised (``identified``), against
the real gateway and reference core."""

from __future__ import annotations

from pathlib import Path

from simulators.registers.evotor import EvotorConfig, run_tills
from tests.simulators.registers.component import PHONES, running_system

TOKEN = "plugin-tok"


async def test_receipts_and_identified_are_counted_as_done(tmp_path: Path) -> None:
    async with running_system(tmp_path, {"evotor": {"pairing_tokens": [TOKEN]}}) as system:
        cfg = EvotorConfig(customer_share=0.5, redeem_share=0.0, refund_share=0.0, cancel_share=0.4,
                           cloud_share=0.0)
        report = await run_tills(system.gateway_url, TOKEN, tills=2, receipts=20, seed=5,
                                 customers=PHONES, config=cfg)
        assert report.errors == 0, report.error_messages
        assert report.receipts == 20 and report.acknowledged == 20  # was 20 + the cleared ones
        assert report.cancels > 0
        # about half the sales named a registered phone (the gateway recognised them), the others none
        assert 0 < report.identified < report.receipts + report.cancels
        await system.check(report.acks)
