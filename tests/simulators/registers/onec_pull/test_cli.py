"""``posgw sim onec_pull`` (simulators.registers.onec_pull.cli): its run ends with the same check
as every till simulator: nothing pending or waiting at the gateway, nothing of the run in the
operator queue, or exit 1."""

from __future__ import annotations

import argparse
import asyncio

import pytest

from simulators.registers.onec_pull import cli
from tests.simulators.registers.test_queue import LATE, gateway


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(["--password", "p", "--port", "0", "--receipts", "0", "--seconds", "0",
                              "--wait", "0", *argv])


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSGW_ADMIN_KEY", raising=False)
    monkeypatch.delenv("POSGW_GATEWAY", raising=False)


async def test_a_late_refusal_in_the_operator_queue_fails_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    async with gateway(held=[(1, 0), (0, 0)], late=[{**LATE, "created_at": 4e9}], rows=[]) as gw:
        assert await asyncio.to_thread(cli.run, parse("--gateway", gw.url)) == 1
        assert gw.healthz_reads == 2
    out = capsys.readouterr()
    assert "operator queue 1" in out.out and "k2 UNKNOWN_CUSTOMER" in out.err


async def test_a_clean_run_passes_and_documents_still_held_do_not(capsys: pytest.CaptureFixture[str]) -> None:
    async with gateway(rows=[]) as gw:
        assert await asyncio.to_thread(cli.run, parse("--gateway", gw.url)) == 0
    async with gateway(held=[(0, 2)], rows=[]) as gw:
        assert await asyncio.to_thread(cli.run, parse("--gateway", gw.url, "--settle-s", "0")) == 1
    assert "0 pending and 2 waiting" in capsys.readouterr().err


def test_without_a_gateway_the_check_is_skipped_only_knowingly(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(parse()) == 1 and "no --gateway" in capsys.readouterr().err
    assert cli.run(parse("--no-queue-check")) == 0
