"""simulators.registers.runner: the report every runner-based simulator prints ends with the
end-of-run check (wait until nothing is pending or waiting, then the operator queue)."""

from __future__ import annotations

import argparse
import asyncio

import pytest

from simulators.registers.native.report import Recorder  # first: native imports the runner back
from simulators.registers.runner import add_output_arguments, print_report
from tests.simulators.registers.test_queue import LATE, gateway


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gateway", default="")
    add_output_arguments(parser)
    return parser.parse_args(list(argv))


async def test_the_report_waits_for_delivery_and_counts_a_late_refusal_as_an_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("POSGW_ADMIN_KEY", raising=False)
    report = Recorder().report(seed=1, tills=1, elapsed_s=0.0, asked=0)
    async with gateway(held=[(2, 0), (0, 1), (0, 0)], late=[{**LATE, "created_at": 4e9}], rows=[]) as gw:
        status = await asyncio.to_thread(print_report, report, parse("--gateway", gw.url))
        assert status == 1 and gw.healthz_reads == 3
        assert "k2 UNKNOWN_CUSTOMER" in capsys.readouterr().out
    async with gateway(held=[(1, 0)], rows=[]) as gw:  # never delivered within the bound: not a pass
        args = parse("--gateway", gw.url, "--settle-s", "0")
        status = await asyncio.to_thread(print_report, report, args)
        assert status == 1 and "still holds 1 pending" in capsys.readouterr().out
    async with gateway(rows=[]) as gw:
        assert await asyncio.to_thread(print_report, report, parse("--gateway", gw.url)) == 0
