"""The Modul Kassa simulator counts what it did: the receipts asked for (a cancelled check is a cancel,
not one more receipt) and the checks whose customer the gateway recognised (``identified``, once per
check however many loyalty requests it made), against the real gateway and reference core."""

from __future__ import annotations

from pathlib import Path

from simulators.registers.modulkassa import Misbehaviour, ModulKassaConfig, run_tills
from tests.simulators.registers.component import PHONES, running_system

TOKEN = "plugin-token"


async def test_receipts_and_identified_are_counted_as_done(tmp_path: Path) -> None:
    async with running_system(tmp_path, {"modulkassa": {"pairing_tokens": [TOKEN]}}) as system:
        cfg = ModulKassaConfig(customer_share=0.5, redeem_share=0.0, refund_share=0.0, cancel_share=0.4,
                               misbehaviour=Misbehaviour(request_every_edit=1.0))
        report = await run_tills(system.gateway_url, TOKEN, tills=2, receipts=20, seed=5,
                                 customers=PHONES, config=cfg)
        assert report.errors == 0, report.error_messages
        assert report.receipts == 20 and report.acknowledged == 20  # was 20 + the cancelled checks
        assert report.cancels > 0
        assert 0 < report.identified < report.receipts + report.cancels
        await system.check(report.acks)
