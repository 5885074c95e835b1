"""drivers.sbis.driver: rounds of the Source against the fake cloud, one poll_page at a time.

Each test drives :func:`gateway.poll.poll_page` by hand (no timers): sales and returns submitted
once, gaps closed by late uploads, a replaced drive, outages and 429s that never move a cursor past
an unsubmitted document, and a fiscal-sign mismatch raised as an alarm (not a second sale).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import pytest

from drivers.sbis.client import Client
from drivers.sbis.cursor import Cursor
from drivers.sbis.driver import SbisDriver, Source
from gateway.poll import CURSOR_KEY, PollOptions, Step, poll_page
from gateway.receipt import EventKind
from simulators.registers.sbis.cloud import FakeSbis, receipt
from tests.drivers.fake_context import FakeContext
from tests.drivers.sbis.cloud_fixtures import BASE, FN, REG, cloud, fast_config, sale

OPTS = PollOptions(interval_s=0.01, fetch_timeout_s=5.0)
REG2, FN2 = "0006543210099999", "7380440700999999"
PHONE = "+79160000101"


@dataclass
class Rig:
    sbis: FakeSbis
    ctx: FakeContext
    source: Source

    async def step(self) -> Step:
        return await poll_page(self.ctx, self.source, OPTS)

    async def cursor(self) -> Cursor:
        text = await self.ctx.state.get(CURSOR_KEY)
        assert text is not None
        return Cursor.decode(text)

    def keys(self) -> list[str]:
        return [e.key for e in self.ctx.submits]


@asynccontextmanager
async def rig(
    sbis: FakeSbis | None = None, ctx: FakeContext | None = None, **changes: object
) -> AsyncIterator[Rig]:
    sbis = sbis or cloud()
    async with sbis.serving(), aiohttp.ClientSession() as session:
        config = fast_config(sbis.url, **changes)
        ctx = ctx or FakeContext("sbis")
        yield Rig(sbis, ctx, Source(ctx, Client(session, config), config))


async def test_sales_and_a_matched_return_are_submitted_once_in_order() -> None:
    async with rig() as r:
        r.sbis.publish(
            FN,
            sale(1, phone="8 916 000-01-01", items=[("Кофе", 64950, 1000), ("Сливки", 5000, 2000)]),
            sale(2),
            {"closeShift": {"fiscalDocumentNumber": 3, "dateTime": BASE + 200}},
        )
        assert await r.step() == Step.MOVED
        r.sbis.publish(FN, sale(4, phone=PHONE, items=[("Сливки", 5000, 1000)], op=2))
        assert await r.step() == Step.MOVED
        assert await r.step() == Step.IDLE  # re-read in the overlap: nothing submitted again
        assert r.keys() == [f"sbis:{FN}:1", f"sbis:{FN}:2", f"sbis:{FN}:4"]
        sale1, _, ret = r.ctx.submits
        assert sale1.receipt is not None and sale1.receipt.customer is not None
        assert sale1.receipt.customer.value == "8 916 000-01-01" and sale1.register_id == REG  # as typed
        assert ret.kind == EventKind.REFUND and ret.sale_key == f"sbis:{FN}:1"
        assert [(x.line_id, x.qty_milli) for x in ret.refund_lines] == [("2", 1000)]
        assert r.ctx.counts["ignored"] == 1 and (await r.cursor()).drives[FN].top == 4


async def test_a_landline_buyer_is_kept_and_an_unreadable_one_is_accrued_anonymously_with_an_alarm(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with rig() as r:
        landline = "+7 (495) 123-45-67"
        r.sbis.publish(
            FN,
            sale(1, phone=landline, items=[("Кофе", 64950, 1000)]),
            sale(2, phone="+7 903 555-01-42 доб. 12"),
            sale(3, phone="buyer@example.com"),
        )
        with caplog.at_level("WARNING"):
            assert await r.step() == Step.MOVED
        first, second, third = r.ctx.submits
        assert first.receipt is not None and first.receipt.customer is not None
        assert first.receipt.customer.value == landline  # a landline was dropped before
        assert second.receipt is not None and second.receipt.customer is None
        assert third.receipt is not None and third.receipt.customer is None
        assert list(r.ctx.alarms) == [f"buyer:{FN}"] and "receipt 2 " in r.ctx.alarms[f"buyer:{FN}"]
        warned = [rec for rec in caplog.records if "buyer phone" in rec.getMessage()]
        assert [getattr(rec, "fd", None) for rec in warned] == [2]  # the e-mail is no problem
        r.sbis.publish(FN, sale(4, phone="8 495 123 45 67", items=[("Кофе", 64950, 1000)], op=2))
        await r.step()
        ret = r.ctx.submits[-1]  # the landline typed another way still finds its sale
        assert ret.kind == EventKind.REFUND and ret.sale_key == f"sbis:{FN}:1" and ret.refund_full


async def test_a_return_without_its_sale_is_an_amount_of_no_sale_and_mapping_renames_the_register() -> None:
    async with rig(registers={REG: "shop1-till1"}) as r:
        r.sbis.publish(FN, sale(1, phone=PHONE, op=2))
        await r.step()
        (ret,) = r.ctx.submits
        assert ret.kind == EventKind.REFUND and ret.sale_key == "" and ret.refund_amount == 10_001
        assert ret.register_id == "shop1-till1"


async def test_a_late_upload_opens_a_gap_that_closes_when_it_arrives() -> None:
    async with rig() as r:
        r.sbis.publish(FN, sale(1), sale(4))
        await r.step()
        drive = (await r.cursor()).drives[FN]
        assert [(g.lo, g.hi) for g in drive.gaps] == [(2, 3)]
        r.sbis.publish(FN, sale(2), sale(3))  # the offline till uploads its old documents
        await r.step()
        assert r.keys() == [f"sbis:{FN}:{n}" for n in (1, 4, 2, 3)]
        assert (await r.cursor()).drives[FN].gaps == ()


async def test_a_gap_older_than_its_age_is_given_up_with_an_alarm() -> None:
    async with rig(gap_max_age_s=0.01, sign_keep_s=10.0) as r:
        r.sbis.publish(FN, sale(1), sale(3))
        await r.step()
        r.sbis.publish(FN, sale(4))
        r.source.clock = lambda: time.time() + 1.0  # the gap is now older than gap_max_age_s
        await r.step()
        assert f"gap:{FN}" in r.ctx.alarms and "2..2" in r.ctx.alarms[f"gap:{FN}"]
        assert (await r.cursor()).drives[FN].gaps == ()


async def test_a_replaced_drive_gets_its_own_cursor_from_its_first_document() -> None:
    async with rig() as r:
        r.sbis.publish(FN, sale(1), sale(2))
        await r.step()
        r.sbis.replace_drive(REG, FN2, BASE + 600)
        r.source._drives_at = float("-inf")  # the next round lists the drives again
        r.sbis.publish(
            FN2,
            receipt(fn=FN2, fd=1, reg_id=REG, at=BASE + 700, items=[("Чай", 25900, 1000)]),
            receipt(fn=FN2, fd=2, reg_id=REG, at=BASE + 800, items=[("Чай", 25900, 1000)]),
        )
        r.sbis.publish(FN, sale(3, at=BASE + 590))  # the old drive's last document, late
        await r.step()
        cur = await r.cursor()
        assert cur.drives[FN2].top == 2 and cur.drives[FN2].fresh and cur.drives[FN].top == 3
        assert sorted(r.keys()) == sorted(
            [f"sbis:{FN}:1", f"sbis:{FN}:2", f"sbis:{FN}:3", f"sbis:{FN2}:1", f"sbis:{FN2}:2"]
        )


async def test_another_fiscal_sign_on_a_re_read_is_an_alarm_not_a_second_sale_and_survives_a_restart() -> (
    None
):
    async with rig() as r:
        r.sbis.publish(FN, sale(1), sale(2))
        await r.step()
        r.sbis.resign(FN, 2, 123)
        await r.step()
        assert r.keys() == [f"sbis:{FN}:1", f"sbis:{FN}:2"]
        assert f"fiscal_sign:{FN}" in r.ctx.alarms and "123" in r.ctx.alarms[f"fiscal_sign:{FN}"]
        restarted = FakeContext("sbis")
        restarted.state = r.ctx.state
        async with rig(r.sbis, restarted) as again:
            await again.step()
            assert f"fiscal_sign:{FN}" in restarted.alarms and restarted.submits == []


@pytest.mark.parametrize("fault", ["html", "malformed", "stall", "429", "429:0"])
async def test_a_failing_page_never_moves_the_cursor(fault: str) -> None:
    async with rig(request_timeout_s=0.3) as r:
        r.sbis.publish(FN, sale(1))
        await r.step()
        before = await r.ctx.state.get(CURSOR_KEY)
        r.sbis.publish(FN, sale(2))
        r.sbis.faults.append(fault)
        assert await r.step() == Step.FAILED
        assert await r.ctx.state.get(CURSOR_KEY) == before and r.keys() == [f"sbis:{FN}:1"]
        assert r.ctx.counts["poll_failed"] >= 1
        r.source._hold.clear()
        r.source.client.not_before = 0.0
        await r.step()
        assert r.keys() == [f"sbis:{FN}:1", f"sbis:{FN}:2"]


async def test_one_failing_drive_does_not_hold_the_others() -> None:
    sbis = cloud()
    sbis.add_register(REG2, FN2, BASE - 86_400)
    async with rig(sbis) as r:
        r.sbis.publish(FN, sale(1))
        r.sbis.publish(FN2, receipt(fn=FN2, fd=1, reg_id=REG2, at=BASE, items=[("Чай", 25900, 1000)]))
        await r.step()  # kkts, storages x2, docs x2: the drive list is cached after this round
        r.sbis.publish(FN, sale(2))
        r.sbis.publish(FN2, receipt(fn=FN2, fd=2, reg_id=REG2, at=BASE + 60, items=[("Чай", 25900, 1000)]))
        r.sbis.faults.append("html")  # the first drive's docs request
        await r.step()
        cur = await r.cursor()
        assert cur.drives[FN].top == 1 and cur.drives[FN2].top == 2
        assert r.ctx.counts["poll_failed"] == 1


async def test_a_storage_error_keeps_the_cursor_and_the_decisions_stay_the_same() -> None:
    async with rig() as r:
        r.sbis.publish(FN, sale(1, phone=PHONE), sale(2, phone=PHONE, op=2, items=[("Кофе", 10_001, 1000)]))
        r.ctx.storage_fails = True
        assert await r.step() == Step.FAILED
        assert await r.ctx.state.get(CURSOR_KEY) is None
        first = r.ctx.submits[-1] if r.ctx.submits else None
        r.ctx.storage_fails = False
        await r.step()
        refund = next(e for e in r.ctx.submits if e.kind == EventKind.REFUND)
        assert refund.sale_key == f"sbis:{FN}:1" and refund.refund_full
        assert first is None or first.key == f"sbis:{FN}:1"


async def test_the_driver_runs_under_poll_and_stops() -> None:
    async with cloud().serving() as sbis:
        sbis.publish(FN, sale(1))
        ctx = FakeContext("sbis")
        driver = SbisDriver(fast_config(sbis.url, auth="login", login="shop", password="pass"))
        assert driver.routes(ctx) == [] and driver.edge is None
        task = asyncio.create_task(driver.run(ctx))
        await asyncio.wait_for(ctx.submit_entered.wait(), 5)
        ctx.stopping.set()
        await asyncio.wait_for(task, 5)
        assert sbis.sessions == {}  # logged out on stop


async def test_a_full_window_is_halved_until_every_document_is_read() -> None:
    async with rig(page_limit=3) as r:
        r.sbis.publish(FN, *[sale(n) for n in range(1, 11)])
        await r.step()
        assert sorted(r.keys()) == sorted(f"sbis:{FN}:{n}" for n in range(1, 11))
        docs = [q for _, path, q in r.sbis.requests if path.endswith("/docs")]
        assert len(docs) > 3 and all(q["limit"] == "3" for q in docs)
        assert not any(k.startswith("window_full") for k in r.ctx.alarms)


async def test_more_documents_in_one_second_than_the_limit_raise_an_alarm() -> None:
    async with rig(page_limit=2) as r:
        r.sbis.publish(FN, *[sale(n, at=BASE) for n in range(1, 4)])
        await r.step()
        assert f"window_full:{FN}" in r.ctx.alarms
        assert len(r.keys()) == 2  # the third waits in its gap; no cursor passes it
        assert not (await r.cursor()).drives[FN].passed(3)


@pytest.mark.parametrize(("overlap_s", "found"), [(14_400.0, True), (7_200.0, False)])
async def test_a_zone_skew_within_the_overlap_loses_nothing(overlap_s: float, found: bool) -> None:
    async with rig(cloud(skew_s=3 * 3600), overlap_s=overlap_s) as r:  # dateFrom read 3 h after dateTime
        r.sbis.publish(FN, sale(1, at=BASE), sale(3, at=BASE + 3000))
        await r.step()
        r.sbis.publish(FN, sale(2, at=BASE + 1500))  # late, between its neighbours
        r.source.clock = lambda: time.time() + 1.0  # the gaps are due to be read again
        await r.step()
        assert (f"sbis:{FN}:2" in r.keys()) is found  # the default 4 h overlap covers a 3 h skew, 2 h not
        assert (await r.cursor()).drives[FN].passed(2) is found


async def test_a_damaged_cursor_raises_an_alarm_and_reads_nothing() -> None:
    async with rig() as r:
        await r.ctx.state.put(CURSOR_KEY, "{not a cursor")
        r.sbis.publish(FN, sale(1))
        assert await r.step() == Step.FAILED
        assert "cursor" in r.ctx.alarms and r.keys() == []


async def test_alarms_are_cleared_when_their_cause_is_gone_or_after_their_keep_time() -> None:
    async with rig() as r:
        r.sbis.faults.append("403")  # the registers' listing
        assert await r.step() == Step.FAILED and "rights:registers" in r.ctx.alarms
        await r.step()
        assert "rights:registers" not in r.ctx.alarms
        r.sbis.publish(FN, sale(1))
        r.sbis.faults.append("403")  # the drive's documents
        await r.step()
        assert f"rights:{FN}" in r.ctx.alarms and r.keys() == []
        r.source._hold.clear()
        await r.step()
        assert f"rights:{FN}" not in r.ctx.alarms and r.keys() == [f"sbis:{FN}:1"]
        r.sbis.resign(FN, 1, 99)
        await r.step()
        assert f"fiscal_sign:{FN}" in r.ctx.alarms
        r.sbis.resign(FN, 1, int(r.ctx.submits[0].receipt.fiscal_sign))  # type: ignore[union-attr]
        await r.step()
        assert f"fiscal_sign:{FN}" in r.ctx.alarms  # stays: an operator has to look
        r.source.clock = lambda: time.time() + 31 * 86_400.0
        await r.step()
        assert f"fiscal_sign:{FN}" not in r.ctx.alarms
