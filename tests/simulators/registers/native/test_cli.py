"""``posgw sim native`` end to end through gateway.cli, and the rate limiter."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from simulators.registers.native import RateLimiter
from tests.simulators.registers.native.fake_gateway import FakeGateway

ROOT = Path(__file__).resolve().parents[4]


async def test_cli_prints_one_json_object(fake: FakeGateway, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["sim", "native", "--gateway", fake.url, "--no-queue-check",
            "--api-key", "secret", "--tills", "2", "--receipts", "6",
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
    code = await asyncio.to_thread(main, ["sim", "native", "--gateway", fake.url, "--no-queue-check",
                                          "--api-key", "secret", "--tills", "1", "--receipts", "1"])
    out = capsys.readouterr().out
    assert code == 1
    assert "receipts 1 on 1 tills" in out and "errors 1" in out and "HTTP 400" in out


def test_cli_without_key_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("POSGW_API_KEY", raising=False)
    monkeypatch.delenv("POSGW_NATIVE_TOKEN", raising=False)
    assert main(["sim", "native", "--gateway", "http://127.0.0.1:9"]) == 2
    assert "API key" in capsys.readouterr().err


async def test_cli_takes_its_options_from_the_common_environment(
    fake: FakeGateway, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """POSGW_GATEWAY, POSGW_SIM_* and POSGW_NATIVE_TOKEN stand for the options (as for every simulator)."""
    for name, value in {"POSGW_GATEWAY": fake.url, "POSGW_NATIVE_TOKEN": "secret", "POSGW_SIM_TILLS": "1",
                        "POSGW_SIM_RECEIPTS": "3", "POSGW_SIM_SEED": "4",
                        "POSGW_SIM_CUSTOMERS": "+79123456789"}.items():
        monkeypatch.setenv(name, value)
    argv = ["sim", "native", "--json", "--no-acks", "--no-queue-check", "--refunds", "0", "--cancels", "0"]
    code = await asyncio.to_thread(main, argv)
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and (data["receipts"], data["tills"], data["seed"], data["asked"]) == (3, 1, 4, 3)
    assert not data["interrupted"] and len(fake.sales) == 3
    monkeypatch.setenv("POSGW_SIM_TILLS", "many")
    with pytest.raises(SystemExit) as exc:  # a bad value is a usage error naming the option
        main(["sim", "native"])
    assert exc.value.code == 2 and "--tills" in capsys.readouterr().err


async def test_ctrl_c_finishes_the_receipts_in_hand_and_prints_the_report(fake: FakeGateway) -> None:
    """A real process: the first SIGINT stops new receipts, every receipt rung up is acknowledged,
    the summary says it was interrupted, exit status 130."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "sim", "native", "--gateway", fake.url, "--no-queue-check",
        "--api-key", "secret",
        "--tills", "2", "--receipts", "100000", "--rate", "40", "--seed", "3",
        "--refunds", "0", "--cancels", "0",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        for _ in range(600):  # bounded: until a few sales went through
            if len(fake.sales) >= 4 or proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        assert len(fake.sales) >= 4, "the simulator sold nothing"
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode()
    assert proc.returncode == 130, (text, err.decode())
    assert "INTERRUPTED by Ctrl-C, 100000 asked" in text and "finishing the receipts in hand" in err.decode()
    rung = int(re.search(r"receipts (\d+) on 2 tills", text).group(1))  # type: ignore[union-attr]
    acked = int(re.search(r"acknowledged (\d+) sales", text).group(1))  # type: ignore[union-attr]
    assert 4 <= rung < 100000 and acked == rung == len(fake.sales)  # nothing left half-done


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
