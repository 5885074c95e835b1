"""``posgw sim native`` end to end through gateway.cli, and the rate limiter."""

from __future__ import annotations

import asyncio
import json

import pytest

from gateway.cli import main
from simulators.registers.native import RateLimiter
from tests.simulators.registers.native.fake_gateway import FakeGateway


async def test_cli_prints_one_json_object(fake: FakeGateway, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["sim", "native", "--gateway", fake.url, "--api-key", "secret", "--tills", "2", "--receipts", "6",
            "--seed", "9", "--customers", "+79123456789,card:77", "--json", "--duplicate", "1"]
    code = await asyncio.to_thread(main, argv)
    out = capsys.readouterr().out
    data = json.loads(out)
    assert code == 0
    assert data["receipts"] == 6 and data["acknowledged"] == 6 and data["errors"] == 0
    assert data["seed"] == 9 and data["duplicates"] == 6
    assert {a["key"] for a in data["acks"]} == set(fake.sales) | set(fake.refunds) | set(fake.cancels)
    for name in ("calc_p50_ms", "calc_p99_ms", "offline_answers", "unacknowledged"):
        assert name in data


async def test_cli_text_summary_and_error_exit(fake: FakeGateway, capsys: pytest.CaptureFixture[str]) -> None:
    fake.reject_sales_400 = True
    code = await asyncio.to_thread(main, ["sim", "native", "--gateway", fake.url, "--api-key", "secret",
                                          "--tills", "1", "--receipts", "1"])
    out = capsys.readouterr().out
    assert code == 1
    assert "receipts 1 on 1 tills" in out and "errors 1" in out and "HTTP 400" in out


def test_cli_without_key_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("POSGW_API_KEY", raising=False)
    assert main(["sim", "native", "--gateway", "http://127.0.0.1:9"]) == 2
    assert "API key" in capsys.readouterr().err


async def test_rate_limiter_spaces_receipts() -> None:
    now = [100.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    limiter = RateLimiter(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        await limiter.acquire()
    assert slept == [0.25, 0.5]
    now[0] = 200.0  # idle for long: no burst credit is saved up
    await limiter.acquire()
    await limiter.acquire()
    assert slept == [0.25, 0.5, 0.25]
    unlimited = RateLimiter(0, sleep=sleep)
    await unlimited.acquire()
    assert len(slept) == 3
