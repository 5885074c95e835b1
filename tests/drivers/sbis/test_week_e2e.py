"""A shop week: fake SBIS cloud ↔ real gateway process (sbis driver) ↔ reference core process.

Four registers over three days: sales with and without a phone, returns, shift reports, a run of
documents uploaded late (a gap that closes later), a fiscal drive replaced mid-week, 429s and HTML
pages, every token expiring, a core outage and a SIGKILL of the gateway in the middle of the week.
At the end every sale and return of the script is applied at the core exactly once, with the
customer and the amounts of the script; then a document read again with another fiscal sign
raises the alarm in /healthz and /metrics and applies nothing more.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sqlalchemy import create_engine, select

from simulators.core.tables import Operation
from simulators.registers.sbis.cloud import FakeSbis
from simulators.registers.sbis.week import shop_week
from simulators.stack import Stack, StackOptions

PHONES = ["+79160000101", "+79160000102", "+79160000103"]


def section(sbis: FakeSbis) -> str:
    return f"""
[drivers.sbis]
enabled = true
auth_url = "{sbis.url}"
api_url = "{sbis.url}"
inn = "{sbis.inn}"
app_client_id = "{sbis.app[0]}"
app_secret = "{sbis.app[1]}"
secret_key = "{sbis.app[2]}"
doc_time_zone = "Europe/Moscow"
interval_s = 0.2
drives_refresh_s = 0.5
gap_recheck_s = 0.3
backfill_s = 691200.0
max_rps = 200.0
request_timeout_s = 3.0
backoff_initial_s = 0.1
backoff_max_s = 0.5
retry_after_max_s = 0.5
"""


def core_rows(db: Path) -> dict[str, tuple[str, int | None, int, int]]:
    """key -> (kind, customer id, gross, paid) of every applied sbis operation, failing on a repeat."""
    engine = create_engine(f"sqlite:///file:{db}?mode=ro&uri=true")
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(
                    Operation.kind, Operation.key, Operation.customer_id, Operation.gross, Operation.paid
                ).where(Operation.key.like("sbis:%"))
            ).all()
    finally:
        engine.dispose()
    out: dict[str, tuple[str, int | None, int, int]] = {}
    for kind, key, customer, gross, paid in rows:
        assert key not in out, f"{key} applied twice"
        out[str(key)] = (str(kind), customer, int(gross), int(paid))
    return out


async def until(check: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not reached in {timeout_s} s: {what}")


async def test_a_shop_week_reaches_the_core_exactly_once(tmp_path: Path) -> None:
    now_raw = int(time.time()) + 3 * 3600  # Moscow wall clock
    week = shop_week(
        seed=3, registers=4, days=3, per_day=3, end_raw=now_raw - 600, phones=PHONES, returns_share=0.5
    )
    sbis = FakeSbis(token_ttl_s=3600.0)
    for reg, fn in week.registers:
        sbis.add_register(reg, fn, week.effective_from)
    async with sbis.serving():
        options = StackOptions(extra_toml=section(sbis))
        async with Stack(tmp_path, options) as stack:
            # the last phone is a buyer who is not a member (a contact for the e-receipt): sold
            # without loyalty, never the operator queue
            members = PHONES[:-1]
            ids = {p: int((await stack.admin.register(p)).customer.customer_id) for p in members}
            for n, step in enumerate(week.steps):
                if step.kind == "replace":
                    sbis.replace_drive(step.reg_id, step.fn, step.at)
                else:
                    sbis.publish(step.fn, *step.docs)
                if n == 2:
                    sbis.faults += ["429:1", "html", "429"]
                if n == 4:
                    sbis.expire_tokens()
                if n == 5:
                    await stack.core_outage()
                if n == 8:
                    await stack.core_back()
                if n == 9:
                    await stack.restart_gateway(kill=True)
                await asyncio.sleep(0.15)
            want = {e.key: e for e in week.expected}

            async def all_applied() -> bool:
                return set(core_rows(stack.core_db)) >= set(want)

            await until(all_applied, 25.0, "every sale and return applied")
            rows = core_rows(stack.core_db)
            assert set(rows) == set(want)
            for key, e in want.items():
                kind, customer, gross, paid = rows[key]
                assert kind == e.kind, key
                assert customer == (ids.get(e.phone) if e.phone else None), key
                if e.kind == "sale":
                    assert gross == e.total, key
                else:
                    assert paid == e.total, key
            assert week.refunds() and any(s.kind == "replace" for s in week.steps)
            assert any(e.phone == PHONES[-1] for e in week.expected)  # the non-member bought too
            assert await stack.wait_drained(10.0) == 0
            assert await stack.operator_queue() == []

            fn, fd = week.sales()[-1].key.split(":")[1:]  # recent: in the overlap of its drive
            sbis.resign(fn, int(fd), 1)
            alarm = f"fiscal_sign:{fn}"

            async def alarmed() -> bool:
                health = await stack.health()
                return any(a["key"] == alarm for a in health.get("alarms", []))

            await until(alarmed, 15.0, "the fiscal-sign alarm in /healthz")
            metrics = await stack.metrics()
            assert metrics[f"posgw_driver_alarm{{driver=sbis,key={alarm}}}"] == 1.0
            assert (await stack.health())["status"] == "degraded"
            assert core_rows(stack.core_db) == rows  # nothing applied twice
