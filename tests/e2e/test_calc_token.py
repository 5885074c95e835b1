"""The calc-to-commit route survives a SIGKILL: real gateway and core processes.

A redemption is decided offline at calculate (core link down); the gateway is killed with
SIGKILL and restarted; the till then commits. Two tills: one brings the calc token back, one
brings nothing (the gateway recalls the calc from its outbox file). Each sale is applied once,
stored with the offline flag and the redemption the cashier was told, and a forged token is
refused with the native error and stores nothing.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from simulators.stack import DEFAULT_PROGRAM, Stack, StackOptions
from tests.drivers.compliance_harness import stored_events

PHONE = "+79162000777"


def _receipt(number: str, customer_id: str) -> dict[str, Any]:
    return {"register_id": "till-7", "receipt_number": number, "shift": "1",
            "occurred_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "customer": {"customer_id": customer_id}, "redeem_max": True,
            "lines": [{"line_id": "1", "sku": "4600001", "name": "Кофе", "price": 50_000, "qty_milli": 1000,
                       "amount": 50_000}]}


async def _post(session: aiohttp.ClientSession, stack: Stack, path: str,
                body: dict[str, Any]) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {stack.options.api_key}"}
    async with session.post(f"{stack.gateway_url}/v1/native/{path}", json=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def _wait_snapshot(session: aiohttp.ClientSession, stack: Stack) -> None:
    """Until the gateway's offline snapshot knows the customer (it refreshes every second)."""
    for _ in range(100):
        status, found = await _post(session, stack, "identify", {"customer": {"phone": PHONE}})
        if status == 200 and found["found"]:
            await asyncio.sleep(1.5)  # one more refresh: the snapshot behind the offline answer
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the customer never reached the gateway")


async def test_offline_redemption_survives_sigkill_between_calc_and_commit(tmp_path: Path) -> None:
    program = tmp_path / "program.toml"  # the shop's program, with redemption by customer id allowed
    seed = DEFAULT_PROGRAM.read_text(encoding="utf-8")
    program.write_text('redeem_with = ["app_code", "customer_id"]\n' + seed, encoding="utf-8")
    options = StackOptions(program=program, offline_redeem_limit=200, calc_budget_ms=300)
    async with Stack(tmp_path, options) as stack, aiohttp.ClientSession() as session:
        # welcome points to spend; identified by id (offline, a phone cannot prove its SMS code)
        who = (await stack.admin.register(PHONE, "Покупатель")).customer.customer_id
        await _wait_snapshot(session, stack)
        await stack.core_outage()
        answers = {}
        for number in ("1", "2"):
            status, answers[number] = await _post(session, stack, "calculate", _receipt(number, who))
            assert status == 200 and answers[number]["offline"], answers[number]
        redeemed = answers["1"]["redeemed_points"]
        assert redeemed > 0, (answers["1"]["rejection"], answers["1"]["message"], answers["1"]["max_points"])

        await stack.gateway.kill()
        await stack.gateway.start(timeout_s=60)
        await stack.core_back()

        with_token = dict(_receipt("1", who), calc_token=answers["1"]["calc_token"])
        without = _receipt("2", who)  # this till keeps nothing: the gateway remembers the calc
        forged = dict(_receipt("3", who), calc_token=answers["1"]["calc_token"][:-4] + "AAAA")
        for body in (with_token, with_token, without):  # the first sale resent: stored once
            status, ack = await _post(session, stack, "sales", body)
            assert status == 200, ack
        status, refused = await _post(session, stack, "sales", forged)
        assert status == 400 and refused["error"]["field"] == "calc_token", refused

        stored = {e.receipt.receipt_number: e for e in stored_events(stack.gateway_dir / "outbox.db")
                  if e.receipt is not None}
        assert set(stored) == {"1", "2"}
        for number in ("1", "2"):
            event = stored[number]
            assert event.offline and event.expected_redeemed == answers[number]["redeemed_points"], event
            assert not event.calc_token
        acks = [f"native:till-7:1:{n}:" for n in ("1", "2")]
        await stack.wait_drained(30.0)
        applied = stack.applied()
        assert sorted(applied.keys("sale")) == sorted(acks)
        assert all(n == 1 for n in applied.counts.values())
