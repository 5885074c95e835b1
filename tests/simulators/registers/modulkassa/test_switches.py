"""The Modul Kassa simulator's misbehaviour switches produce exactly the wire behaviour they claim.

Each test runs :func:`run_tills` (or ``posgw sim modulkassa``) against a recording fake gateway whose
answers are written here from ``drivers/modulkassa/README.md`` (loyalty-request: one impact per
position, 1 kopeck off the unit price, and a ``data`` blob; ``CHECK_CLOSED``: ``{"accepted": true,
"duplicate": <seen before>}``; a wrong token: 401 ``{"result": "failed"}``), then asserts on the
recorded requests.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from gateway.cli import main
from simulators.registers.modulkassa import Misbehaviour, ModulKassaConfig, run_tills
from tests.simulators.registers.recording_gateway import RecordingGateway, Seen, recording

TOKEN, PHONE, N = "mk-tok", "+79160000101", 4
OPERATION, EVENT = "/v1/modulkassa/operation", "/v1/modulkassa/event"
CLOSED = "ru.modulkassa.pos.events.CHECK_CLOSED"
BLOB = '{"lg":{"pts":0}}'


class FakeModulKassa:
    def __init__(self) -> None:
        self.checks: set[str] = set()
        self.attempts: Counter[str] = Counter()
        self.calc_delay_s = 0.0
        self.first_close_delay_s = 0.0
        self.dedup = True
        self.check_tokens = True
        self.pad = 0  # printable_data length

    def routes(self) -> dict[tuple[str, str], Any]:
        return {("POST", OPERATION): self.operation, ("POST", EVENT): self.event}

    def _refused(self, seen: Seen) -> bool:
        return self.check_tokens and seen.headers.get("X-Gateway-Token") != TOKEN

    async def operation(self, seen: Seen) -> tuple[int, Any]:
        if self._refused(seen):
            return 401, {"result": "failed", "data": {"message": "bad token"}}
        await asyncio.sleep(self.calc_delay_s)
        data = seen.body["data"]
        out: dict[str, Any] = {"impacts": [], "data": BLOB}
        for pid in data["positions"]:
            price = Decimal(data[f"position/{pid}/price"])
            iid = f"i-{pid}"
            out["impacts"].append(iid)
            out[f"impact/{iid}/position_id"] = pid
            out[f"impact/{iid}/price"] = str(max(price - Decimal("0.01"), Decimal(0)))
            out[f"impact/{iid}/quantity"] = data[f"position/{pid}/quantity"]
        if self.pad:
            out["printable_data"] = "x" * self.pad
        return 200, {"result": "succeeded", "data": out}

    async def event(self, seen: Seen) -> tuple[int, Any]:
        if self._refused(seen):
            return 401, {"result": "failed", "data": {"message": "bad token"}}
        check_id = seen.body["extras"]["check_id"]
        self.attempts[check_id] += 1
        if self.attempts[check_id] == 1 and self.first_close_delay_s:
            await asyncio.sleep(self.first_close_delay_s)
        duplicate = self.dedup and check_id in self.checks
        self.checks.add(check_id)
        return 200, {"accepted": True, "duplicate": duplicate}


FakeFixture = tuple[FakeModulKassa, RecordingGateway]


@pytest.fixture
async def fake() -> AsyncIterator[FakeFixture]:
    mk = FakeModulKassa()
    async with recording(mk.routes()) as gw:
        yield mk, gw


def config(**mis: Any) -> ModulKassaConfig:
    return ModulKassaConfig(customer_share=1.0, redeem_share=0.0, refund_share=0.0, cancel_share=0.0,
                            misbehaviour=Misbehaviour(**mis))


async def run(gw: RecordingGateway, cfg: ModulKassaConfig, receipts: int = N) -> Any:
    return await run_tills(gw.url, TOKEN, tills=1, receipts=receipts, seed=3, customers=[PHONE], config=cfg)


def closes(gw: RecordingGateway) -> list[Seen]:
    return [s for s in gw.on(EVENT) if s.body["action"] == CLOSED]


def by_check(seen: list[Seen]) -> dict[str, list[Seen]]:
    out: dict[str, list[Seen]] = {}
    for s in seen:
        key = s.body["extras"]["check_id"] if "extras" in s.body else s.body["data"]["request_id"]
        out.setdefault(key, []).append(s)
    return out


def discounts(close: Seen) -> list[str]:
    check = json.loads(close.body["extras"]["check"])
    return [p["discountAmount"] for p in check["inventPositions"]]


async def test_no_misbehaviour_is_one_request_and_one_close_per_check(fake: FakeFixture) -> None:
    _, gw = fake
    report = await run(gw, config())
    assert report.errors == 0, report.error_messages
    assert report.acknowledged == N and report.duplicates == 0
    assert [len(v) for v in by_check(closes(gw)).values()] == [1] * N
    assert [len(v) for v in by_check(gw.on(OPERATION)).values()] == [1] * N
    for close in closes(gw):  # the impacts were applied: a discount per line and our blob echoed
        assert any(Decimal(str(d)) > 0 for d in discounts(close)) and close.body["loyalty"]["data"] == BLOB


async def test_duplicate_sends_the_same_check_closed_twice(fake: FakeFixture) -> None:
    _, gw = fake
    report = await run(gw, config(duplicate=1.0))
    assert report.errors == 0, report.error_messages
    grouped = by_check(closes(gw))
    assert len(grouped) == N
    for sends in grouped.values():
        assert len(sends) == 2 and sends[0].raw == sends[1].raw
    assert report.duplicates == N and report.acknowledged == N


async def test_duplicate_not_recognised_is_reported(fake: FakeFixture) -> None:
    mk, gw = fake
    mk.dedup = False
    report = await run(gw, config(duplicate=1.0))
    assert report.errors == N and all("not deduplicated" in m for m in report.error_messages)


async def test_resend_after_timeout_resends_the_same_body(fake: FakeFixture) -> None:
    mk, gw = fake
    mk.first_close_delay_s = 0.4
    report = await run(gw, config(resend_after_timeout=1.0, resend_timeout_ms=50))
    assert report.errors == 0, report.error_messages
    grouped = by_check(closes(gw))
    assert len(grouped) == N
    for sends in grouped.values():
        assert len(sends) == 2 and sends[0].raw == sends[1].raw
        assert sends[1].at - sends[0].at >= 0.05
        assert sends[0].answered_at is None or sends[1].at < sends[0].answered_at
    assert report.timeouts == N and report.acknowledged == N


async def test_close_before_answer_closes_at_full_price(fake: FakeFixture) -> None:
    mk, gw = fake
    mk.calc_delay_s = 0.3
    report = await run(gw, config(close_before_answer=1.0))
    assert report.errors == 0, report.error_messages
    calc_of, close_of = by_check(gw.on(OPERATION)), by_check(closes(gw))
    assert set(calc_of) == set(close_of) and len(close_of) == N
    for check_id, (close,) in close_of.items():
        (calc,) = calc_of[check_id]
        assert calc.answered_at is not None and close.at < calc.answered_at
        assert all(Decimal(str(d)) == 0 for d in discounts(close))
        assert "data" not in close.body["loyalty"]


async def test_out_of_order_delivers_each_close_after_the_next_checks_close(fake: FakeFixture) -> None:
    _, gw = fake
    report = await run(gw, config(out_of_order=1.0))
    assert report.errors == 0, report.error_messages
    rung = list(by_check(gw.on(OPERATION)))  # check ids in the order they were rung up
    delivered = [s.body["extras"]["check_id"] for s in closes(gw)]
    assert sorted(delivered) == sorted(rung) and len(rung) == N
    for earlier, later in itertools.pairwise(rung):
        assert delivered.index(earlier) > delivered.index(later), (rung, delivered)


async def test_out_of_order_sometimes_interleaves_with_in_order_closes(fake: FakeFixture) -> None:
    _, gw = fake
    report = await run(gw, config(out_of_order=0.5), receipts=12)
    assert report.errors == 0, report.error_messages
    rung = list(by_check(gw.on(OPERATION)))
    delivered = [s.body["extras"]["check_id"] for s in closes(gw)]
    assert sorted(delivered) == sorted(rung) and delivered != rung
    assert report.acknowledged == 12


async def test_request_every_edit_asks_after_each_added_position(fake: FakeFixture) -> None:
    _, gw = fake
    report = await run(gw, config(request_every_edit=1.0), receipts=6)
    assert report.errors == 0, report.error_messages
    grouped = by_check(gw.on(OPERATION))
    assert len(grouped) == 6
    sizes = [[len(s.body["data"]["positions"]) for s in sends] for sends in grouped.values()]
    assert all(seq == list(range(1, len(seq) + 1)) for seq in sizes), sizes
    assert any(len(seq) > 1 for seq in sizes), sizes
    for sends in grouped.values():  # each request extends the previous one
        ids = [s.body["data"]["positions"] for s in sends]
        assert all(ids[i] == ids[i + 1][: len(ids[i])] for i in range(len(ids) - 1))


@pytest.mark.parametrize("switch", ["bad_token", "missing_token"])
async def test_token_switches_send_each_request_first_with_a_wrong_or_no_token(
    fake: FakeFixture, switch: str
) -> None:
    _, gw = fake
    report = await run(gw, config(**{switch: 1.0}))
    assert report.errors == 0, report.error_messages
    for path in (OPERATION, EVENT):
        seen = gw.on(path)
        assert len(seen) == 2 * N
        for first, second in zip(seen[::2], seen[1::2], strict=True):
            assert first.raw == second.raw and (first.status, second.status) == (401, 200)
            assert second.headers["X-Gateway-Token"] == TOKEN
            token = first.headers.get("X-Gateway-Token")
            assert token is None if switch == "missing_token" else (token and token != TOKEN)
    assert report.unauthorized == 2 * N and report.acknowledged == N


async def test_a_gateway_accepting_a_wrong_token_is_reported(fake: FakeFixture) -> None:
    mk, gw = fake
    mk.check_tokens = False
    report = await run(gw, config(bad_token=1.0))
    assert report.unauthorized == 0 and report.errors == 2 * N
    assert all("expected 401" in m for m in report.error_messages)


async def test_slow_reads_take_the_answer_in_64_byte_chunks(fake: FakeFixture) -> None:
    mk, gw = fake
    mk.pad = 64 * 6
    fast = await run(gw, config())
    slow = await run(gw, config(slow_read_ms=40))
    assert fast.errors == slow.errors == 0, slow.error_messages
    assert slow.calc_count == N and slow.calc_p50_ms >= 6 * 40
    assert fast.calc_p50_ms * 2 < slow.calc_p50_ms


# ------------------------------------------------------------------ CLI


def test_cli_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["sim", "modulkassa", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--gateway" in out and "--request-every-edit" in out and "--slow-reads" in out


async def test_cli_json_run_against_the_fake(fake: FakeFixture, capsys: pytest.CaptureFixture[str]) -> None:
    _, gw = fake
    argv = ("sim modulkassa --gateway URL --no-queue-check --token TOKEN --tills 1 --receipts 3 --seed 4"
            " --customers PHONE --refunds 0 --cancels 0 --duplicate 1 --json").split()
    argv = [{"URL": gw.url, "TOKEN": TOKEN, "PHONE": PHONE}.get(a, a) for a in argv]
    code = await asyncio.to_thread(main, argv)
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["errors"] == 0, data["error_messages"]
    assert data["receipts"] == 3 and data["acknowledged"] == 3 and data["duplicates"] == 3
    assert {a["key"] for a in data["acks"]} == {f"modulkassa:check:{c}" for c in by_check(closes(gw))}


async def test_cli_json_run_reports_errors_with_exit_1(
    fake: FakeFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    mk, gw = fake
    mk.check_tokens = False
    argv = ["sim", "modulkassa", "--gateway", gw.url, "--no-queue-check",
            "--token", TOKEN, "--tills", "1", "--receipts", "1",
            "--seed", "2", "--refunds", "0", "--cancels", "0", "--bad-token", "1", "--json"]
    code = await asyncio.to_thread(main, argv)
    data = json.loads(capsys.readouterr().out)
    assert code == 1 and data["errors"] == 2
