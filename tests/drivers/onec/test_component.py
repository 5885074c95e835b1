"""1C tills (zeep on the gateway's WSDL) ↔ real gateway (onec driver) ↔ reference core, over real sockets.

A small trading day on two POS: Soft, Soft with the write-off, Fiscal, returns citing the sale,
rollbacks by TransactionID, balances, Fiscals resent under the same and a new RequestID, Fiscals
without Soft, write-offs above the approval (90003, nothing stored), POS clocks 3 minutes ahead.
After the outbox drains the core has applied exactly the cheques the gateway acknowledged, once
each, and every customer's balance is the welcome bonus plus the points of those cheques.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.config import parse_config
from gateway.daemon import Daemon
from simulators.core.server import start_core
from simulators.registers.onec import Misbehaviour, OneCConfig, run_tills
from simulators.stack import free_port
from simulators.stack_check import CoreAdmin
from tests.simulators.registers.component import PHONES, System, phone_program, running_system

ONEC = {"onec": {"user": "1c", "password": "onec-secret"}}


async def test_a_1c_trading_day_reaches_the_core_exactly(tmp_path: Path) -> None:
    async with running_system(tmp_path, ONEC) as system:
        mis = Misbehaviour(
            same_id_resend=0.2,
            raw_quirks=0.3,
            many_items=0.1,
            new_id_resend=0.2,
            fiscal_without_soft=0.1,
            over_approval=0.3,
            bad_password=0.05,
            clock_ahead=0.2,  # returns and rollbacks then carry a time before their sale's
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
            system.gateway_url, config, tills=2, receipts=24, seed=5, customers=list(PHONES)
        )
        assert report.errors == 0, report.error_messages
        assert {a.kind for a in report.acks} == {"sale", "refund", "cancel"}, report.acks
        assert report.duplicates > 0 and report.identified > 0
        figures = await system.check(report.acks)
        assert figures["redeemed"] > 0 and figures["accrued"] > 0, figures


async def test_the_core_down_for_a_while_loses_nothing(tmp_path: Path) -> None:
    """Part of the day with the core stopped: Softs answered offline (no balance), Fiscals stored and
    answered 0; the core back on the same port: every acknowledged cheque applied once, balances exact."""
    db, address = tmp_path / "core.db", f"127.0.0.1:{free_port()}"
    program = phone_program(tmp_path)
    core = await start_core(program, f"sqlite:///{db}", address)
    admin = CoreAdmin(address)
    welcome = {}
    for phone in PHONES:
        customer = await admin.register(phone, "Покупатель", at=datetime.now(UTC) - timedelta(minutes=1))
        welcome[phone] = int(customer.welcome_points)
    config = parse_config(
        {
            "gateway": {
                "data_dir": str(tmp_path / "gw"),
                "listen_host": "127.0.0.1",
                "listen_port": 0,
                "calc_budget_ms": 1500,
                "log_level": "ERROR",
            },
            "core": {"address": address},
            "drivers": {"onec": {"enabled": True, **ONEC["onec"]}},
        },
        environ={},
    )
    daemon = Daemon(config)
    await daemon.start()
    try:
        system = System(f"http://127.0.0.1:{daemon.port}", address, db, daemon, admin, welcome)
        tills = OneCConfig(
            password="onec-secret",
            customer_share=1.0,
            redeem_share=0.5,
            refund_share=0.2,
            cancel_share=0.1,
            misbehaviour=Misbehaviour(new_id_resend=0.3),
        )
        online = await run_tills(
            system.gateway_url, tills, tills=2, receipts=8, seed=3, customers=list(PHONES)
        )
        await core.stop(grace=0.5)
        offline = await run_tills(
            system.gateway_url, tills, tills=2, receipts=8, seed=4, customers=list(PHONES), first_number=101
        )
        assert offline.errors == 0 and offline.offline_answers > 0, offline.error_messages
        core = await start_core(program, f"sqlite:///{db}", address)
        assert online.errors == 0, online.error_messages
        await system.check([*online.acks, *offline.acks])
    finally:
        await daemon.stop(timeout=5.0)
        await admin.close()
        await core.stop(grace=0.5)
