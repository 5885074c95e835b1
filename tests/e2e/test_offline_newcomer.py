"""A customer registered after the gateway's full balance snapshot is served offline within seconds.

Real core + gateway processes with a full snapshot refresh of 10 minutes (a shop's setting): the
customer registered after the start reaches the gateway's offline copy through the incremental
fetch of recently changed customers (gateway.offline_cache, every 5 s), so when the core link
drops just after, the till's calculate is answered offline *with* the customer (accrual), not
"not found in the local copy".
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from simulators.fleet import ScriptedTill, lines, native_client
from simulators.registers.native.report import Recorder
from simulators.stack import Stack, StackOptions

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
NEWCOMER = "+79164000777"


async def test_a_customer_registered_seconds_ago_is_found_offline(tmp_path: Path) -> None:
    async with Stack(tmp_path / "stack", StackOptions(refresh_s=600.0)) as stack:
        snapshot = stack.gateway_dir / "offline" / "balances.json"
        for _ in range(200):  # the full snapshot at start (before the newcomer exists)
            if snapshot.exists():
                break
            await asyncio.sleep(0.05)
        await stack.admin.register(NEWCOMER, "Новый Покупатель")
        phones: list[str] = []
        for _ in range(300):  # bounded wait for the incremental fetch (every 5 s)
            phones = [c["phone"] for c in json.loads(snapshot.read_text(encoding="utf-8"))["customers"]]
            if NEWCOMER in phones:
                break
            await asyncio.sleep(0.1)
        assert NEWCOMER in phones, "the new customer never reached the offline snapshot"
        await stack.core_outage()
        async with native_client(stack.gateway_url, stack.options.api_key) as client:
            till = ScriptedTill(client, Recorder(), "front-01", shift="1")
            receipt = till.receipt(lines(("4600001", 1_000), ("4600010", 2_000)), NEWCOMER)
            applied, ack = await till.sell(receipt)
            answer = till.answers[receipt.identity]
        assert ack is not None and applied.offline
        assert "не найден" not in str(answer.get("message", "")), answer
        assert applied.points_to_accrue > 0 and answer.get("customer"), answer
        await stack.core_back()
