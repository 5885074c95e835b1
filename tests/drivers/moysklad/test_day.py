"""A MoySklad day end to end: MoySklad's cloud ↔ the real gateway ↔ the reference core ↔ SMS.ru (simulators).

The gateway is the real daemon (outbox, sender, pipeline, aiohttp) with only the MoySklad driver;
the core is the reference core on SQLite texting codes through its SMS.ru adapter to the SMS.ru
simulator. The pipeline gives every driver context the daemon's own CoreClient as its desk
(``ctx.desk``, see drivers/moysklad/desk.py): registrations and codes reach the real core.

Program seed004 (5 %, cap 30 %, no welcome points). Balances, by hand:
- earning sale 129.90 + 2 × 45.50 + 1000.00 = 1 220.90 → ⌊6 104.5 kop⌋ → 61;
- spending 3 × 100.00 + 77.77 with no preference: the maximum, 61 (balance; cap 113); the core
  spreads 61.00 as 48.44 / 12.56, so 3 × 100.00 pays 251.56: split into 1 @ 83.86 + 2 @ 83.85;
  accrual ⌊(377.77 − 61) × 5 %⌋ = 15 → balance 15;
- 1 500.00 paid 1 000.00 by a gift certificate: 75 → 90;
- two tills recalc 2 × 50.00 for the customer, 10 points each; both sell it: each earns
  ⌊90.00 × 5 %⌋ = 4 → 90 − 20 + 8 = 78 (with holds the second recalc still sees 80 available);
- the earning sale returned (1 × 45.50, then the rest, the rest twice): its 61 taken back → 17.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.daemon import Daemon, Notifier
from gateway.metrics import Metrics
from simulators.core.server import running_core_handle
from simulators.core.sms import SmsRu
from simulators.registers.moysklad import cli
from simulators.registers.moysklad.cloud import Cloud
from simulators.registers.moysklad.day import GIFT, Day
from simulators.sms.smsru import Faults, SmsRuSimulator, serving
from tests.drivers.compliance_harness import gateway_config, read_rows
from tests.simulators.core.acceptance import load

API_ID = "sms-api"
TOKEN = "ms-day-token"
STORE = "6b1c0f2e-0b6a-11ef-0a80-0d6e00112233"


@dataclass
class Rig:
    daemon: Daemon
    sms: SmsRuSimulator
    session: aiohttp.ClientSession

    def cloud(self, timeout_s: float = 10.0) -> Cloud:
        return Cloud(
            self.session,
            f"http://127.0.0.1:{self.daemon.port}/v1/moysklad",
            TOKEN,
            STORE,
            timeout_s=timeout_s,
        )


@asynccontextmanager
async def rig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gateway: dict[str, Any] | None = None, **options: Any
) -> AsyncIterator[Rig]:
    sms = SmsRuSimulator(API_ID)
    async with (
        serving(sms) as sms_url,
        running_core_handle(
            load("seed004"), f"sqlite:///{tmp_path / 'core.db'}", sender=SmsRu(API_ID, sms_url)
        ) as core,
    ):
        data = tmp_path / "gw"
        data.mkdir()
        driver = {
            "tokens": [TOKEN],
            "code_budget_ms": 1500,
            "gift_cards": [{"name": GIFT[1], "id": GIFT[0], "initial_kopecks": 100_000}],
            **options,
        }
        config = gateway_config("moysklad", driver, data, int(core.address.rpartition(":")[2]), gateway)
        daemon = Daemon(config, metrics=Metrics(), notifier=Notifier(environ={}))
        await daemon.start()
        try:
            async with aiohttp.ClientSession() as session:
                yield Rig(daemon, sms, session)
        finally:
            await daemon.stop(timeout=5.0)


@pytest.mark.parametrize("hold_ttl_s", [0, 120], ids=["no-holds", "holds"])
async def test_a_moysklad_day_balances_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hold_ttl_s: int
) -> None:
    """With holds, each spending recalc reserves the points and the sale consumes its recalc's hold."""
    async with rig(tmp_path, monkeypatch, {"hold_ttl_s": hold_ttl_s}) as r:
        report = await Day(r.cloud(), "+79031112233").run()
        rows = read_rows(r.daemon.config.outbox_path)
    assert report.problems == []
    assert report.balances == [
        ("registered", 0),
        ("after earning", 61),
        ("after spending", 15),
        ("after gift card", 90),
        ("after two tills", 78),
        ("after returns", 17),
    ]
    # two creates, the earning sale twice, spending, gift card, two tills' sales, three returns
    assert report.applied == 11
    spending = report.recalcs["spending"]
    assert spending["needVerification"] is True and spending["bonusProgram"]["bonusValueToSpend"] == 61
    assert [(p["quantity"], p["discountedPrice"]) for p in spending["positions"]] == [
        (1, 83.86),
        (2, 83.85),
        (1, 65.21),
    ]  # the split position, its parts adjacent
    assert len(r.sms.inbox["79031112233"]) == 2  # the registration code and the spending code
    keys = [k for k, _ in rows]
    assert len(keys) == len(set(keys)) == 7  # 5 sales + 2 returns: the resent sale and return stored once
    assert [state for _, state in rows if state == "rejected"] == []  # nothing in the operator queue


@pytest.mark.parametrize(
    "faults", [Faults(delay_s=30.0), Faults(down=True)], ids=["sms-slow-30s", "sms-down"]
)
async def test_sms_trouble_is_a_cashier_message_within_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, faults: Faults
) -> None:
    async with rig(tmp_path, monkeypatch, code_budget_ms=1000) as r:
        r.sms.faults = faults
        cloud = r.cloud(timeout_s=5.0)  # MoySklad waits 5 s: an answer at all proves the till was not hung
        reply = await cloud.spending_code("c-1", "+79035550000")
        assert reply.status == 503, reply
        [error] = reply.errors()
        assert error["error"] == "SMS не отправлено" and "без списания баллов" in error["error_message"], (
            error
        )
        assert error["code"] == 999 and len(error["error_message"]) <= 140
        registration = await cloud.registration_code("s-1", "+79035550001", "Анна")
        assert registration.status == 503 and registration.errors()
        r.sms.faults = Faults()
        again = await cloud.spending_code("c-1", "+79035550000")  # the failed code did not hold it back
        assert again.status == 200 and again.data["verificationCode"] == r.sms.last_code("+79035550000")


async def test_the_simulator_exits_non_zero_when_something_is_not_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``posgw sim moysklad`` with a token the gateway does not know: nothing is applied, exit 1."""
    async with rig(tmp_path, monkeypatch) as r:
        parser = argparse.ArgumentParser()
        cli.add_arguments(parser)
        args = parser.parse_args(
            [
                "--gateway",
                f"http://127.0.0.1:{r.daemon.port}",
                "--token",
                "not-ours",
                "--no-queue-check",
                "--timeout-s",
                "5",
            ]
        )
        code = await asyncio.to_thread(cli.run, args)
    out = capsys.readouterr().out
    assert code == 1 and "0 documents applied" in out and "PROBLEM: create UNCHECKED" in out
